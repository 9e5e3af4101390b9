#!/usr/bin/env python3
"""An independent reader of gzipped pprof files for leaktrail's tests.

Standard library only: it parses the protobuf wire format itself, with the
field numbers of github.com/google/pprof/proto/profile.proto, and prints a
JSON summary: sample types, per-type totals, samples with their function
stacks (innermost first), mappings and comments.

usage: pprof_decode.py FILE.pb.gz
"""
import gzip
import json
import sys


def varint(buf, i):
    shift = result = 0
    while True:
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7


def fields(buf):
    """Yields (field number, wire type, value) of one message."""
    i = 0
    while i < len(buf):
        key, i = varint(buf, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = varint(buf, i)
        elif wt == 1:
            v, i = int.from_bytes(buf[i:i + 8], "little"), i + 8
        elif wt == 2:
            n, i = varint(buf, i)
            v, i = buf[i:i + n], i + n
        elif wt == 5:
            v, i = int.from_bytes(buf[i:i + 4], "little"), i + 4
        else:
            raise ValueError(f"wire type {wt} at {i}")
        yield num, wt, v


def signed(v):
    return v - (1 << 64) if v >= 1 << 63 else v


def ints(wt, v):
    """A repeated integer field: packed (wire type 2) or one value."""
    if wt != 2:
        return [v]
    out, i = [], 0
    while i < len(v):
        x, i = varint(v, i)
        out.append(x)
    return out


def message(buf, spec):
    """Decodes buf by spec: {num: (name, kind, repeated)}."""
    out = {name: [] if rep else (0 if kind != "msg" else None)
           for name, kind, rep in spec.values()}
    for num, wt, v in fields(buf):
        if num not in spec:
            continue
        name, kind, rep = spec[num]
        if kind == "int":
            vals = [signed(x) for x in ints(wt, v)]
        elif kind == "bool":
            vals = [bool(x) for x in ints(wt, v)]
        elif kind == "str":
            vals = [v.decode("utf-8")]
        else:
            vals = [message(v, kind)]
        if rep:
            out[name].extend(vals)
        else:
            out[name] = vals[-1]
    return out


VALUE_TYPE = {1: ("type", "int", False), 2: ("unit", "int", False)}
LABEL = {1: ("key", "int", False), 2: ("str", "int", False),
         3: ("num", "int", False), 4: ("num_unit", "int", False)}
SAMPLE = {1: ("location_id", "int", True), 2: ("value", "int", True),
          3: ("label", LABEL, True)}
MAPPING = {1: ("id", "int", False), 2: ("memory_start", "int", False),
           3: ("memory_limit", "int", False), 4: ("file_offset", "int", False),
           5: ("filename", "int", False), 6: ("build_id", "int", False)}
LINE = {1: ("function_id", "int", False), 2: ("line", "int", False)}
LOCATION = {1: ("id", "int", False), 2: ("mapping_id", "int", False),
            3: ("address", "int", False), 4: ("line", LINE, True)}
FUNCTION = {1: ("id", "int", False), 2: ("name", "int", False),
            3: ("system_name", "int", False), 4: ("filename", "int", False),
            5: ("start_line", "int", False)}
PROFILE = {1: ("sample_type", VALUE_TYPE, True), 2: ("sample", SAMPLE, True),
           3: ("mapping", MAPPING, True), 4: ("location", LOCATION, True),
           5: ("function", FUNCTION, True), 6: ("string_table", "str", True),
           9: ("time_nanos", "int", False), 13: ("comment", "int", True),
           14: ("default_sample_type", "int", False)}


def main():
    with open(sys.argv[1], "rb") as f:
        raw = gzip.decompress(f.read())
    p = message(raw, PROFILE)
    s = p["string_table"]
    assert s and s[0] == "", "string table must start with the empty string"
    funcs = {f["id"]: f for f in p["function"]}
    locs = {l["id"]: l for l in p["location"]}
    types = [[s[t["type"]], s[t["unit"]]] for t in p["sample_type"]]
    totals = [0] * len(types)
    samples = []
    for smp in p["sample"]:
        assert len(smp["value"]) == len(types)
        for k, v in enumerate(smp["value"]):
            totals[k] += v
        stack = []
        for lid in smp["location_id"]:
            for line in locs[lid]["line"]:
                f = funcs[line["function_id"]]
                stack.append({"function": s[f["name"]], "file": s[f["filename"]],
                              "line": line["line"],
                              "start_line": f["start_line"],
                              "location": lid})
        samples.append({"values": smp["value"], "stack": stack,
                        "labels": {s[l["key"]]: l["num"] for l in smp["label"]}})
    print(json.dumps({
        "sample_types": types,
        "default_sample_type": s[p["default_sample_type"]],
        "totals": totals,
        "samples": samples,
        "mappings": [{"filename": s[m["filename"]], "build_id": s[m["build_id"]],
                      "start": m["memory_start"], "limit": m["memory_limit"]}
                     for m in p["mapping"]],
        "comments": [s[c] for c in p["comment"]],
        "time_nanos": p["time_nanos"],
    }, indent=1))


if __name__ == "__main__":
    main()
