"""Reads an iCalendar feed with the `icalendar` library (PyPI), which
calendar tools use, so the feed is checked by a parser Bedside did not
write. Prints one JSON line per VEVENT: uid, summary, start, end (UTC ISO
8601), status, sequence, url.

    python read_ics.py < feed.ics
"""

import json
import sys

from icalendar import Calendar


def main():
    calendar = Calendar.from_ical(sys.stdin.buffer.read())
    for event in calendar.walk("VEVENT"):
        print(json.dumps({
            "uid": str(event.get("UID")),
            "summary": str(event.get("SUMMARY")),
            "start": event.decoded("DTSTART").isoformat(),
            "end": event.decoded("DTEND").isoformat(),
            "status": str(event.get("STATUS")),
            "sequence": int(event.get("SEQUENCE", 0)),
            "url": str(event.get("URL")),
        }))


if __name__ == "__main__":
    main()
