//! The `bedside` binary as an operator uses it: help, configuration,
//! migrations, accounts, device provisioning against a real Mosquitto,
//! the demo, and `serve` stopping cleanly on SIGTERM.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use bedside_test_support::{Broker, free_port, fresh_database, publish, wait_for};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_bedside");

/// The binary with a clean environment: a fresh data directory and the given database.
fn bedside(data_dir: &Path, db_url: &str) -> Command {
    let mut command = Command::new(BIN);
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("BEDSIDE_DATA_DIR", data_dir)
        .env("BEDSIDE_DATABASE__URL", db_url)
        .env("BEDSIDE_LOG__FILTER", "warn")
        .current_dir(data_dir)
        .kill_on_drop(true);
    command
}

async fn run(mut command: Command) -> (bool, String, String) {
    let out = command.output().await.expect("run bedside");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn help_documents_every_subcommand() {
    let dir = tempfile::tempdir().expect("dir");
    let mut command = bedside(dir.path(), "postgres://unused");
    command.arg("--help");
    let (ok, out, _) = run(command).await;
    assert!(ok);
    for sub in ["serve", "migrate", "demo", "config", "users", "devices"] {
        assert!(out.contains(sub), "--help lists {sub}:\n{out}");
    }
    let mut command = bedside(dir.path(), "postgres://unused");
    command.args(["devices", "provision", "--help"]);
    let (ok, out, _) = run(command).await;
    assert!(
        ok && out.contains("--serial") && out.contains("--kind") && out.contains("--patient"),
        "{out}"
    );
}

#[tokio::test]
async fn config_print_merges_file_and_environment_and_redacts_secrets() {
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("bedside.toml");
    std::fs::write(&file, "[clinic]\nname = \"Harbour Clinic\"\ntime_zone = \"Europe/Lisbon\"\n[http]\naddr = \"127.0.0.1:7000\"\n").expect("write");
    let mut command = bedside(
        dir.path(),
        "postgres://bedside:db-password@db.example/bedside",
    );
    command
        .args(["config", "print"])
        .env("BEDSIDE_HTTP__ADDR", "0.0.0.0:8443")
        .env(
            "BEDSIDE_AUTH__SIGNING_KEY",
            "a-very-secret-signing-key-of-40-bytes!!",
        )
        .env("BEDSIDE_MQTT__PASSWORD", "broker-secret");
    let (ok, out, err) = run(command).await;
    assert!(ok, "{err}");
    assert!(
        out.contains("name = \"Harbour Clinic\""),
        "the file is read:\n{out}"
    );
    assert!(
        out.contains("addr = \"0.0.0.0:8443\""),
        "the environment overrides the file:\n{out}"
    );
    for secret in ["a-very-secret-signing-key", "broker-secret", "db-password"] {
        assert!(!out.contains(secret), "{secret} printed:\n{out}");
    }
    assert!(out.contains("<redacted>"));

    let mut command = bedside(dir.path(), "postgres://x");
    command
        .args(["config", "print"])
        .env("BEDSIDE_HTTP__ADDR", "not an address");
    let (ok, _, err) = run(command).await;
    assert!(!ok && err.contains("invalid configuration"), "{err}");
    let mut command = bedside(dir.path(), "postgres://x");
    command
        .args(["config", "print"])
        .env("BEDSIDE_CLINIC__TIME_ZONE", "Mars/Olympus");
    let (ok, _, err) = run(command).await;
    assert!(!ok && err.contains("time zone"), "{err}");
}

#[tokio::test]
async fn users_create_reads_the_password_from_standard_input() {
    let dir = tempfile::tempdir().expect("dir");
    let (db, url) = fresh_database().await;
    let create = |password: &'static str, email: &'static str| {
        let mut command = bedside(dir.path(), &url);
        command
            .args([
                "users",
                "create",
                "--role",
                "clinician",
                "--email",
                email,
                "--name",
                "Dr. Stdin",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        async move {
            let mut child = command.spawn().expect("spawn");
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(password.as_bytes())
                .await
                .expect("write");
            let out = child.wait_with_output().await.expect("wait");
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        }
    };
    let (ok, err) = create("short\n", "short@test.example").await;
    assert!(!ok && err.contains("at least 12"), "{err}");
    let (ok, err) = create("a long enough password\n", "stdin@test.example").await;
    assert!(ok, "{err}");
    let hash: String =
        sqlx::query_scalar("SELECT password_hash FROM users WHERE email = 'stdin@test.example'")
            .fetch_one(&db)
            .await
            .expect("user");
    assert!(hash.starts_with("$argon2id$"));
    assert!(bedside_signaling::auth::password::verify(
        "a long enough password",
        &hash
    ));
    let practitioners: i64 = sqlx::query_scalar("SELECT count(*) FROM practitioners")
        .fetch_one(&db)
        .await
        .expect("count");
    assert_eq!(practitioners, 1, "a clinician is also a practitioner");
}

/// Subscribes as the gateway and collects `topic payload` lines.
async fn gateway_subscriber(
    port: u16,
    password: &str,
) -> (
    tokio::process::Child,
    tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    // stdbuf: mosquitto_sub block-buffers a piped stdout; we need each line as it comes.
    let mut child = Command::new("stdbuf")
        .args([
            "-oL",
            "mosquitto_sub",
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-u",
            "bedside-gateway",
            "-P",
            password,
        ])
        .args(["-t", "bedside/v1/devices/+/vitals", "-q", "1", "-v", "-d"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("mosquitto_sub (apt-get install -y mosquitto-clients)");
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            let _ = tx.send(line);
        }
    });
    (child, rx)
}

fn credentials(provision_output: &str) -> (String, String) {
    let field = |name: &str| {
        provision_output
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|rest| rest.split_whitespace().next().expect("value").to_owned())
            .unwrap_or_else(|| panic!("{name} in:\n{provision_output}"))
    };
    (field("mqtt user"), field("mqtt pass"))
}

#[tokio::test]
async fn provisioned_devices_may_publish_only_below_their_own_topic_on_a_real_mosquitto() {
    let dir = tempfile::tempdir().expect("dir");
    let (_db, url) = fresh_database().await;
    let provision = |serial: &'static str| {
        let mut command = bedside(dir.path(), &url);
        command.args([
            "devices",
            "provision",
            "--serial",
            serial,
            "--kind",
            "pulse_oximeter",
        ]);
        async move {
            let (ok, out, err) = run(command).await;
            assert!(ok, "{err}");
            out
        }
    };
    let (one_user, one_pass) = credentials(&provision("OX-ONE").await);
    let (two_user, two_pass) = credentials(&provision("OX-TWO").await);
    let files = dir.path().join("mosquitto");
    let passwd = std::fs::read_to_string(files.join("passwd")).expect("password file");
    assert!(
        passwd
            .lines()
            .any(|l| l.starts_with(&format!("{one_user}:$7$101$"))),
        "{passwd}"
    );
    assert!(!passwd.contains(&one_pass), "only the hash is written");
    let gateway_password = std::fs::read_to_string(dir.path().join("mqtt-gateway.password"))
        .expect("gateway password")
        .trim()
        .to_owned();

    let broker = Broker::start(&files.join("passwd"), &files.join("acl")).await;
    let (_sub, mut received) = gateway_subscriber(broker.port, &gateway_password).await;
    wait_for("the gateway subscription", Duration::from_secs(10), || {
        let line = received.try_recv().ok();
        async move { line.filter(|l| l.contains("SUBACK")).map(|_| ()) }
    })
    .await;

    let topic = |user: &str| format!("bedside/v1/devices/{user}/vitals");
    assert!(
        !publish(
            broker.port,
            &one_user,
            "wrong password",
            &topic(&one_user),
            "x"
        )
        .await,
        "a wrong password is refused"
    );
    // Device one writes into device two's topic: the broker must drop it.
    publish(
        broker.port,
        &one_user,
        &one_pass,
        &topic(&two_user),
        "forged-by-one",
    )
    .await;
    assert!(
        publish(
            broker.port,
            &one_user,
            &one_pass,
            &topic(&one_user),
            "reading-of-one"
        )
        .await
    );
    assert!(
        publish(
            broker.port,
            &two_user,
            &two_pass,
            &topic(&two_user),
            "reading-of-two"
        )
        .await
    );
    let mut seen = Vec::new();
    wait_for(
        "both devices' own readings",
        Duration::from_secs(10),
        || {
            while let Ok(line) = received.try_recv() {
                seen.push(line);
            }
            let done = seen.iter().any(|l| l.ends_with("reading-of-one"))
                && seen.iter().any(|l| l.ends_with("reading-of-two"));
            async move { done.then_some(()) }
        },
    )
    .await;
    assert!(
        seen.iter()
            .any(|l| *l == format!("{} reading-of-one", topic(&one_user))),
        "{seen:?}"
    );
    assert!(
        !seen.iter().any(|l| l.contains("forged-by-one")),
        "a device wrote below another device's topic: {seen:?}"
    );
    broker.stop().await;
}

#[tokio::test]
async fn demo_seeds_once_and_serve_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().expect("dir");
    let (db, url) = fresh_database().await;
    for round in 0..2 {
        let mut command = bedside(dir.path(), &url);
        command.arg("demo");
        let (ok, out, err) = run(command).await;
        assert!(ok, "{err}");
        assert!(out.contains("admin@demo.bedside.test"), "{out}");
        if round == 1 {
            assert!(out.contains("exists already"), "{out}");
        }
    }
    let counts: (i64, i64, i64) = sqlx::query_as("SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM patients), (SELECT count(*) FROM appointments)")
        .fetch_one(&db)
        .await
        .expect("counts");
    assert_eq!((counts.0, counts.1), (3, 6));
    assert!(counts.2 >= 12);

    // A device with a known password for a demo patient, then the broker
    // with the files `demo` and `devices provision` wrote.
    let patient: uuid::Uuid = sqlx::query_scalar("SELECT id FROM patients ORDER BY mrn LIMIT 1")
        .fetch_one(&db)
        .await
        .expect("a demo patient");
    let mut command = bedside(dir.path(), &url);
    command.args([
        "devices",
        "provision",
        "--serial",
        "SERVE-1",
        "--kind",
        "thermometer",
        "--patient",
        &patient.to_string(),
    ]);
    let (ok, out, err) = run(command).await;
    assert!(ok, "{err}");
    let (device_user, device_password) = credentials(&out);
    let files = dir.path().join("mosquitto");
    let broker = Broker::start(&files.join("passwd"), &files.join("acl")).await;

    let port = free_port();
    let mut command = bedside(dir.path(), &url);
    command
        .arg("serve")
        .env("BEDSIDE_HTTP__ADDR", format!("127.0.0.1:{port}"))
        .env(
            "BEDSIDE_MQTT__URL",
            format!("mqtt://127.0.0.1:{}", broker.port),
        )
        .env(
            "BEDSIDE_METRICS__ADDR",
            format!("127.0.0.1:{}", free_port()),
        )
        .env("BEDSIDE_VISITS__MEDIA_UDP", "127.0.0.1:0")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = command.spawn().expect("serve");
    let client = reqwest::Client::new();
    wait_for("bedside to be ready", Duration::from_secs(30), || {
        let client = client.clone();
        async move {
            let response = client
                .get(format!("http://127.0.0.1:{port}/readyz"))
                .send()
                .await
                .ok()?;
            response.status().is_success().then_some(())
        }
    })
    .await;
    // Ready means the gateway is connected too: a reading goes all the way in.
    let topic = format!("bedside/v1/devices/{device_user}/vitals");
    let stored = || {
        let db = db.clone();
        async move {
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM vitals WHERE patient_id = $1")
                .bind(patient)
                .fetch_one(&db)
                .await
                .expect("count")
        }
    };
    wait_for(
        "a published reading to be stored by `bedside serve`",
        Duration::from_secs(30),
        || {
            let (topic, user, password) =
                (topic.clone(), device_user.clone(), device_password.clone());
            let port = broker.port;
            async move {
                publish(
                    port,
                    &user,
                    &password,
                    &topic,
                    r#"[{"n":"body_temperature","u":"Cel","v":37.4}]"#,
                )
                .await;
                (stored().await > 0).then_some(())
            }
        },
    )
    .await;
    // The demo's simulated devices publish through the broker as themselves.
    let mut simulator = bedside(dir.path(), &url);
    simulator
        .args(["simulate", "--every", "1"])
        .env(
            "BEDSIDE_MQTT__URL",
            format!("mqtt://127.0.0.1:{}", broker.port),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut simulator = simulator.spawn().expect("simulate");
    wait_for(
        "simulated readings from several demo patients",
        Duration::from_secs(30),
        || {
            let db = db.clone();
            async move {
                let patients: i64 = sqlx::query_scalar(
                    "SELECT count(DISTINCT patient_id) FROM vitals WHERE patient_id <> $1",
                )
                .bind(patient)
                .fetch_one(&db)
                .await
                .expect("count");
                (patients >= 5).then_some(())
            }
        },
    )
    .await;
    simulator.kill().await.expect("stop the simulator");
    let pid = child.id().expect("pid").to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .await
            .expect("kill")
            .success()
    );
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("exits within 30 s")
        .expect("wait");
    assert!(status.success(), "exit status {status}");
    assert!(
        client
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .send()
            .await
            .is_err(),
        "no longer listening"
    );
    broker.stop().await;
}

#[tokio::test]
async fn killing_serve_mid_stream_loses_no_reading_and_stores_none_twice() {
    let dir = tempfile::tempdir().expect("dir");
    let (db, url) = fresh_database().await;
    let patient = bedside_records::patients::create(
        &db,
        &bedside_records::patients::PatientDetails {
            mrn: bedside_records::domain::Mrn::parse("KILL-1").unwrap(),
            given_name: bedside_records::domain::BoundedText::parse("given_name", "Kim", 50)
                .unwrap(),
            family_name: bedside_records::domain::BoundedText::parse("family_name", "Kill", 50)
                .unwrap(),
            birth_date: bedside_records::domain::BirthDate::parse("1960-01-01").unwrap(),
            sex: bedside_records::domain::Sex::Other,
            email: None,
            phone: None,
        },
    )
    .await
    .unwrap();
    let mut command = bedside(dir.path(), &url);
    command.args([
        "devices",
        "provision",
        "--serial",
        "KILL-OX",
        "--kind",
        "pulse_oximeter",
        "--patient",
        &patient.id.to_string(),
    ]);
    let (ok, out, err) = run(command).await;
    assert!(ok, "{err}");
    let (user, password) = credentials(&out);
    let files = dir.path().join("mosquitto");
    let broker = Broker::start(&files.join("passwd"), &files.join("acl")).await;
    let serve = || {
        let mut command = bedside(dir.path(), &url);
        command
            .arg("serve")
            .env("BEDSIDE_HTTP__ADDR", format!("127.0.0.1:{}", free_port()))
            .env(
                "BEDSIDE_METRICS__ADDR",
                format!("127.0.0.1:{}", free_port()),
            )
            .env("BEDSIDE_VISITS__MEDIA_UDP", "127.0.0.1:0")
            .env(
                "BEDSIDE_MQTT__URL",
                format!("mqtt://127.0.0.1:{}", broker.port),
            )
            .env("BEDSIDE_INGEST__BATCH_MESSAGES", "5")
            .env("BEDSIDE_INGEST__BATCH_AGE_MS", "5")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        command.spawn().expect("serve")
    };
    let stored = || {
        let db = db.clone();
        async move {
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM vitals")
                .fetch_one(&db)
                .await
                .expect("count")
        }
    };
    let topic = format!("bedside/v1/devices/{user}/vitals");
    let t0 = chrono::Utc::now().timestamp() + 1;
    let reading = |i: i64| format!(r#"[{{"bt":{t0},"n":"spo2","v":{},"t":{i}}}]"#, 90 + i % 10);

    let mut first = serve();
    // Subscribed once the first reading is stored (repeats are absorbed by the unique key).
    wait_for("the first reading", Duration::from_secs(30), || {
        let (topic, user, password, payload) =
            (topic.clone(), user.clone(), password.clone(), reading(0));
        let port = broker.port;
        async move {
            publish(port, &user, &password, &topic, &payload).await;
            (stored().await >= 1).then_some(())
        }
    })
    .await;
    // Publish while killing the server without warning somewhere in the stream.
    for i in 1..150 {
        assert!(publish(broker.port, &user, &password, &topic, &reading(i)).await);
        if i == 60 {
            first.kill().await.expect("SIGKILL serve");
        }
    }
    let mut second = serve();
    wait_for(
        "all 150 readings after the restart",
        Duration::from_secs(60),
        || async { (stored().await == 150).then_some(()) },
    )
    .await;
    let distinct: i64 = sqlx::query_scalar("SELECT count(DISTINCT time) FROM vitals")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(distinct, 150);
    second.kill().await.ok();
    broker.stop().await;
}
