"""The README's demo: a small program whose C extension has a bug.

    python examples/demo.py

Its Python code calls into buggyext through a few functions; buggyext dereferences NULL a
few C frames deep. crashcatch writes faulthandler's report plus the full C stack."""
import os
import sys

import crashcatch

crashcatch.enable()

sys.path.insert(0, os.environ.get("BUGGYEXT_DIR", os.path.join(os.path.dirname(__file__), "build")))
import buggyext  # noqa: E402


def parse_record(record):
    fields = record.split(",")
    return checksum(fields)


def checksum(fields):
    # The extension is asked for a checksum and crashes instead.
    return buggyext.segfault(len(fields))


def main():
    for record in ["a,b,c", "d,e"]:
        print("checksum", parse_record(record))


if __name__ == "__main__":
    main()
