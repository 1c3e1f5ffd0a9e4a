#!/usr/bin/env python3
"""Turns uap-core's regexes.yaml into the regexes.json that query-service compiles in.

Keeps the `user_agent_parsers` and `os_parsers` sections unchanged and in order (order is
meaningful: the first matching regex wins), drops `device_parsers` (query-service reports no
device model), and writes one parser per line so that an update reviews as a readable diff.
Needs Python 3 with PyYAML (Debian: python3-yaml).

    python3 convert.py path/to/uap-core/regexes.yaml > regexes.json
"""

import hashlib
import json
import sys

import yaml

SECTIONS = {
    "user_agent_parsers": ["regex", "family_replacement", "v1_replacement", "v2_replacement",
                           "v3_replacement", "v4_replacement"],
    "os_parsers": ["regex", "os_replacement", "os_v1_replacement", "os_v2_replacement",
                   "os_v3_replacement", "os_v4_replacement"],
}


def main() -> None:
    source_path = sys.argv[1]
    with open(source_path, "rb") as source:
        raw = source.read()
    data = yaml.safe_load(raw)
    out = sys.stdout
    notice = (
        "Derived from uap-core's regexes.yaml (https://github.com/ua-parser/uap-core), "
        "Copyright 2009 Google Inc., licensed under the Apache License, Version 2.0 (see "
        "LICENSE beside this file). Changed by this project: converted from YAML to JSON by "
        "convert.py, device_parsers removed, comments dropped; the regexes and replacements of "
        f"the two remaining sections are unchanged. Source sha256: {hashlib.sha256(raw).hexdigest()}"
    )
    out.write("{\n" + '"_notice": ' + json.dumps(notice, ensure_ascii=False))
    for section, keys in SECTIONS.items():
        parsers = data[section]
        out.write(",\n" + json.dumps(section) + ": [\n")
        lines = []
        for parser in parsers:
            unknown = set(parser) - set(keys)
            if unknown:
                sys.exit(f"{section}: unknown keys {sorted(unknown)} in {parser!r}")
            # Values are strings in the format; YAML would read an unquoted 10 as a number.
            entry = {key: str(parser[key]) for key in keys if key in parser}
            lines.append(json.dumps(entry, ensure_ascii=False))
        out.write(",\n".join(lines) + "\n]")
    out.write("\n}\n")


if __name__ == "__main__":
    main()
