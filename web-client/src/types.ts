// Shapes of the REST API v1 (docs/api.md).
import type { AppointmentStatus } from './lib/transitions';

export type Role = 'admin' | 'clinician';

export interface Tokens {
  access_token: string;
  refresh_token: string;
  expires_in: number;
  token_type: string;
}

export interface TotpChallenge {
  totp_required: true;
  challenge_token: string;
  expires_in: number;
}

export type LoginAnswer = Tokens | TotpChallenge;

export interface Me {
  id: string;
  email: string;
  name: string;
  role: Role;
  totp_enabled: boolean;
  practitioner_id: string | null;
}

export interface Clinic {
  name: string;
  time_zone: string;
  now: string;
  /** How staff sign in: password, and/or the clinic's identity provider (its name). */
  sign_in?: { password: boolean; provider: string | null };
}

export interface User {
  id: string;
  email: string;
  name: string;
  role: Role;
  totp_enabled?: boolean;
  practitioner_id?: string | null;
  [extra: string]: unknown;
}

export interface Practitioner {
  id: string;
  user_id: string;
  name: string;
  email: string;
  qualification: string | null;
  active: boolean;
}

export type Sex = 'female' | 'male' | 'other' | 'unknown';

export interface Patient {
  id: string;
  mrn: string;
  given_name: string;
  family_name: string;
  birth_date: string;
  sex: Sex;
  email: string | null;
  phone: string | null;
  created_at: string;
  /** Set once the patient was erased on their request. */
  erased_at?: string | null;
}

export type DeviceKind = 'pulse_oximeter' | 'blood_pressure_monitor' | 'thermometer' | 'scale' | 'glucometer';

export interface Device {
  id: string;
  serial: string;
  kind: DeviceKind;
  mqtt_username: string;
  patient_id: string | null;
  created_at: string;
}

export interface PatientDevice {
  device: Device;
  assigned_from: string;
  assigned_to: string | null;
}

export interface DeviceCreated {
  device: Device;
  mqtt_username: string;
  mqtt_password: string;
  password_file_line: string;
  acl_lines: string[] | string;
  /** True when the server rewrote the broker's files and reloaded it: the device can connect now. */
  broker_updated?: boolean;
}

export type AppointmentKind = 'video' | 'in_person';

export interface Appointment {
  id: string;
  patient_id: string;
  patient_name: string;
  practitioner_id: string;
  practitioner_name: string;
  start: string;
  end: string;
  start_local: string;
  end_local: string;
  time_zone: string;
  duration_minutes: number;
  kind: AppointmentKind;
  reason: string;
  status: AppointmentStatus;
  join_url?: string | null;
}

export interface JoinLink {
  join_url: string;
  valid_from: string;
  valid_until: string;
}

export interface Note {
  id: string;
  appointment_id: string;
  patient_id: string;
  author_id: string;
  author_name: string;
  text: string;
  status: 'draft' | 'signed';
  signed_at: string | null;
  amends_note_id: string | null;
  created_at: string;
  updated_at: string;
}

export interface Consent {
  id: string;
  patient_id: string;
  kind: string;
  text_version: string;
  accepted_at: string;
  recorded_by_role: string;
}

export interface AuditEntry {
  id: string;
  at: string;
  actor_id: string | null;
  actor_role: string;
  patient_id: string | null;
  action: string;
  resource: string;
  outcome: 'allowed' | 'denied';
  request_id: string;
  client_addr: string;
}

export interface TotpEnrollment {
  secret: string;
  otpauth_uri: string;
  qr_svg: string;
}

export interface JoinAnswer {
  access_token: string;
  expires_in: number;
  appointment_id: string;
}

export interface Visit {
  appointment: Appointment;
  patient_given_name: string;
  consent_required: boolean;
  consent_version: string;
  consent_text: string;
}

// ---- vitals, NEWS2, alerts, thresholds ----

/** A patient's latest value of one metric (canonical unit). */
export interface CurrentValue {
  metric: string;
  value: number;
  unit: string;
  time: string;
}

export type VitalsView = '1h' | '24h' | '7d' | '30d';

export interface Bucket {
  start: string;
  min: number;
  avg: number;
  max: number;
  count: number;
}

export interface VitalsHistory {
  metric: string;
  unit: string;
  view: VitalsView;
  buckets: Bucket[];
}

export type News2Band = 'low' | 'low_medium' | 'medium' | 'high';

export interface News2 {
  total: number;
  band: News2Band;
  missing: string[];
  /** 1, or 2 for hypercapnic respiratory failure (set per patient by a clinician). */
  spo2_scale: 1 | 2;
}

/** One of a patient's current devices and how it is doing. */
export interface DeviceState {
  device_id: string;
  kind: DeviceKind;
  serial: string;
  /** null: never heard from. */
  online: boolean | null;
  last_seen: string | null;
  battery_percent: number | null;
  battery_at: string | null;
}

export interface News2Settings {
  spo2_scale: 1 | 2;
}

export type AlertSeverity = 'low' | 'medium' | 'high' | 'critical';
export type AlertStatus = 'open' | 'acknowledged' | 'resolved';

export interface Alert {
  id: string;
  patient_id: string;
  /** `threshold:<metric>`, `news2` or `offline:<device id>`. */
  rule: string;
  severity: AlertSeverity;
  status: AlertStatus;
  opened_at: string;
  updated_at: string;
  acknowledged_at: string | null;
  acknowledged_by: string | null;
  resolved_at: string | null;
  resolved_by: string | null;
  detail: Record<string, unknown> | null;
}

export interface Threshold {
  metric: string;
  unit: string;
  low: number | null;
  high: number | null;
  source: 'clinic' | 'patient';
}
