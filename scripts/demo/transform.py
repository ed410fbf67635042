#!/usr/bin/env python3
"""Turns the Chinook Django fixture into messiah demo input (Python 3 stdlib only).

One tenant per sales support agent (an employee who has customers):
  customers -> clients     (name, email, phone; other columns -> custom_fields)
  invoices  -> projects    (client_id, name "Invoice <pk>"; other columns -> custom_fields)
  lines     -> activities  (project_id, type 'invoice_line', description "Track <id>: <name>";
                            track, unit_price, quantity -> custom_fields)

custom_fields keys are the source columns in snake_case; numbers stay exact JSON numbers
(decimal text of the source, never a float round trip), dates are YYYY-MM-DD, nulls are
omitted.

Usage: transform.py FIXTURE OUT_DIR
Writes into OUT_DIR:
  manifest.tsv          tenant_id, name, slug, contact_email, contact_name, clients, projects,
                        activities, accented client names, md5 of the sorted client names,
                        sum of invoice totals (one line per tenant)
  source_totals.tsv     customers, invoices, invoice lines, accented customer names in the fixture
  tenant_ids.txt        the demo's tenant ids, one per line
  drop_tenants.sql      drops the demo tenants left by a previous run (42704 ignored)
  create_tenants.sql    messiah_create_tenant calls (psql variables :settings, :second_server for the last agent)
  define_fields.sql     messiah_define_field calls, one per (tenant, table, field)
  fields.txt            the field definitions, readable
  <tenant_id>/{clients,projects,activities}.json   the rows to import
"""
import collections
import datetime
import hashlib
import json
import os
import re
import sys
import unicodedata
import uuid
from decimal import Decimal, InvalidOperation

# Source column (fixture field name) -> custom_fields key (snake_case).
SNAKE = {
    "postalcode": "postal_code",
    "invoicedate": "invoice_date",
    "billingaddress": "billing_address",
    "billingcity": "billing_city",
    "billingstate": "billing_state",
    "billingcountry": "billing_country",
    "billingpostalcode": "billing_postal_code",
}
# Source columns that become base columns, foreign keys, or are implied by the tenant.
CUSTOMER_BASE = {"firstname", "lastname", "email", "phone", "support_rep"}
INVOICE_BASE = {"customer"}
LINE_BASE = {"invoice"}
DATE_KEYS = {"invoice_date"}
NUMBER_KEYS = {"total", "unit_price", "quantity", "track"}

# Letters NFKD does not decompose into ASCII.
TRANSLIT = {"ø": "o", "Ø": "O", "ß": "ss", "æ": "ae", "Æ": "AE", "œ": "oe", "Œ": "OE",
            "ł": "l", "Ł": "L", "đ": "d", "Đ": "D", "þ": "th", "Þ": "Th", "ð": "d"}

# Text pattern that every postal code of the data satisfies (checked below).
POSTAL_PATTERN = r"^[0-9A-Z]+([ -][0-9A-Z]+)*$"


def die(msg):
    print(f"transform.py: {msg}", file=sys.stderr)
    sys.exit(1)


def ascii_words(s):
    s = "".join(TRANSLIT.get(c, c) for c in s)
    s = unicodedata.normalize("NFKD", s).encode("ascii", "ignore").decode("ascii").lower()
    return [w for w in re.split(r"[^a-z0-9]+", s) if w]


def snake(col):
    key = SNAKE.get(col, col)
    key = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", key).lower()
    if not re.fullmatch(r"[a-z][a-z0-9_]*", key):
        die(f"column {col!r} has no usable snake_case name")
    return key


def number(v, where):
    """An exact Decimal from a fixture number (parsed as Decimal) or numeric string."""
    if isinstance(v, bool):
        die(f"{where}: boolean where a number was expected")
    if isinstance(v, (int, Decimal)):
        return Decimal(v)
    if isinstance(v, str):
        try:
            d = Decimal(v.strip())
        except InvalidOperation:
            die(f"{where}: {v!r} is not a number")
        if not d.is_finite():
            die(f"{where}: {v!r} is not a finite number")
        return d
    die(f"{where}: {v!r} is not a number")


def date(v, where):
    m = re.match(r"(\d{4}-\d{2}-\d{2})(?:[T ].*)?$", str(v))
    if not m:
        die(f"{where}: {v!r} is not a date")
    return datetime.date.fromisoformat(m.group(1)).isoformat()


def custom_fields(fields, base, where):
    out = {}
    for col, v in fields.items():
        if col in base or v is None:
            continue
        key = snake(col)
        if key in DATE_KEYS:
            v = date(v, f"{where}.{col}")
        elif key in NUMBER_KEYS:
            v = number(v, f"{where}.{col}")
        out[key] = v
    return out


def dumps(v):
    """JSON text; Decimals as their exact decimal literal (no float round trip)."""
    if isinstance(v, Decimal):
        text = format(v, "f")
        if not re.fullmatch(r"-?\d+(\.\d+)?", text):
            die(f"cannot write {v!r} as a JSON number")
        return text
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(k, ensure_ascii=False)}: {dumps(x)}" for k, x in v.items()) + "}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(dumps(x) for x in v) + "]"
    return json.dumps(v, ensure_ascii=False)


def names_md5(clients):
    """md5 of the client names sorted by code point, joined by newlines (as SQL computes it
    with string_agg(name, E'\\n' ORDER BY name COLLATE "C") in a UTF-8 database)."""
    names = sorted(c["name"] for c in clients)
    return hashlib.md5("\n".join(names).encode("utf-8")).hexdigest()


def lit(v):
    """SQL literal (standard_conforming_strings = on)."""
    if v is None:
        return "NULL"
    return "'" + str(v).replace("'", "''") + "'"


def main():
    args = sys.argv[1:]
    if len(args) != 2:
        die("usage: transform.py FIXTURE OUT_DIR")
    fixture, out = args
    with open(fixture, encoding="utf-8") as f:
        rows = json.load(f, parse_float=Decimal)
    if not isinstance(rows, list):
        die("the fixture is not a JSON list")
    by = collections.defaultdict(dict)
    for r in rows:
        by[r["model"]][r["pk"]] = r["fields"]
    employees, customers = by["chinook.employee"], by["chinook.customer"]
    invoices, lines, tracks = by["chinook.invoice"], by["chinook.invoiceline"], by["chinook.track"]
    if not (employees and customers and invoices and lines):
        die("the fixture lacks chinook.employee/customer/invoice/invoiceline rows")

    # --- tenants: employees who are some customer's support rep -----------------------
    reps = sorted({c["support_rep"] for c in customers.values() if c.get("support_rep") is not None})
    orphans = [pk for pk, c in customers.items() if c.get("support_rep") not in employees]
    if orphans:
        die(f"customers without a known support rep: {orphans}")
    tenants = []
    for pk in reps:
        e = employees[pk]
        full = f"{e['firstname']} {e['lastname']}"
        words = ascii_words(full) or [str(pk)]
        tid = "agent_" + "_".join(words)
        slug = "-".join(words)
        if not re.fullmatch(r"[a-z][a-z0-9_]*", tid) or len(tid) > 56:
            die(f"bad tenant id {tid!r}")
        tenants.append({"pk": pk, "tenant_id": tid, "name": full, "slug": slug,
                        "email": e.get("email"), "contact_name": full})
    if len({t["tenant_id"] for t in tenants}) != len(tenants):
        die("two agents map to the same tenant_id")

    # --- rows per tenant -------------------------------------------------------------
    ns = uuid.uuid4()  # fresh ids every run
    client_id = {pk: str(uuid.uuid5(ns, f"customer/{pk}")) for pk in customers}
    project_id = {pk: str(uuid.uuid5(ns, f"invoice/{pk}")) for pk in invoices}
    data = {t["tenant_id"]: {"clients": [], "projects": [], "activities": []} for t in tenants}
    tenant_of_customer = {}
    rep_tenant = {t["pk"]: t["tenant_id"] for t in tenants}
    is_accented = lambda s: any(ord(ch) > 127 for ch in s)
    accented = collections.Counter()

    for pk in sorted(customers):
        c = customers[pk]
        tid = rep_tenant[c["support_rep"]]
        tenant_of_customer[pk] = tid
        name = f"{c['firstname']} {c['lastname']}".strip()
        if is_accented(name):
            accented[tid] += 1
        data[tid]["clients"].append({
            "id": client_id[pk], "name": name, "email": c.get("email"), "phone": c.get("phone"),
            "custom_fields": custom_fields(c, CUSTOMER_BASE, f"customer {pk}")})
    tenant_of_invoice = {}
    for pk in sorted(invoices):
        i = invoices[pk]
        if i["customer"] not in customers:
            die(f"invoice {pk}: unknown customer {i['customer']}")
        tid = tenant_of_customer[i["customer"]]
        tenant_of_invoice[pk] = tid
        data[tid]["projects"].append({
            "id": project_id[pk], "client_id": client_id[i["customer"]], "name": f"Invoice {pk}",
            "status": "active", "custom_fields": custom_fields(i, INVOICE_BASE, f"invoice {pk}")})
    for pk in sorted(lines):
        ln = lines[pk]
        if ln["invoice"] not in invoices:
            die(f"invoice line {pk}: unknown invoice {ln['invoice']}")
        track = tracks.get(ln["track"], {})
        desc = f"Track {ln['track']}" + (f": {track['name']}" if track.get("name") else "")
        data[tenant_of_invoice[ln["invoice"]]]["activities"].append({
            "project_id": project_id[ln["invoice"]], "type": "invoice_line", "description": desc,
            "custom_fields": custom_fields(ln, LINE_BASE, f"invoice line {pk}")})

    # --- field definitions: one per custom_fields key seen, typed from the data --------
    entity_rows = collections.defaultdict(list)
    for d in data.values():
        for table, rs in d.items():
            entity_rows[table].extend(r["custom_fields"] for r in rs)
    countries = sorted({r[k] for rs in entity_rows.values() for r in rs
                        for k in ("country", "billing_country") if k in r})
    rules_for = {
        "company": ("text", {"maxLength": 80}),
        "address": ("text", {"maxLength": 120}),
        "city": ("text", {"maxLength": 80}),
        "state": ("text", {"maxLength": 40}),
        "country": ("select", {"options": countries}),
        "postal_code": ("text", {"pattern": POSTAL_PATTERN, "maxLength": 12}),
        "fax": ("text", {"maxLength": 40}),
        "invoice_date": ("date", {"min": "2000-01-01"}),
        "billing_address": ("text", {"maxLength": 120}),
        "billing_city": ("text", {"maxLength": 80}),
        "billing_state": ("text", {"maxLength": 40}),
        "billing_country": ("select", {"options": countries}),
        "billing_postal_code": ("text", {"pattern": POSTAL_PATTERN, "maxLength": 12}),
        "total": ("number", {"min": 0}),
        "track": ("number", {"integer": True, "min": 1}),
        "unit_price": ("number", {"min": 0}),
        "quantity": ("number", {"integer": True, "min": 1}),
    }
    display = {"postal_code": "Postal code", "billing_postal_code": "Billing postal code",
               "invoice_date": "Invoice date", "unit_price": "Unit price"}
    pattern = re.compile(POSTAL_PATTERN)
    fields = []  # (table, key, type, rules, required)
    for table in ("clients", "projects", "activities"):
        rs = entity_rows[table]
        keys = sorted({k for r in rs for k in r}, key=lambda k: list(rules_for).index(k) if k in rules_for else 99)
        for key in keys:
            if key not in rules_for:
                die(f"{table}.custom_fields key {key!r} has no field definition in transform.py")
            ftype, rules = rules_for[key]
            values = [r[key] for r in rs if key in r]
            for v in values:  # every real row must satisfy its definition
                bad = (ftype in ("text", "select", "date") and not isinstance(v, str)) \
                    or (ftype == "number" and not isinstance(v, Decimal)) \
                    or ("pattern" in rules and not pattern.search(v)) \
                    or ("maxLength" in rules and len(v) > rules["maxLength"]) \
                    or ("options" in rules and v not in rules["options"]) \
                    or (ftype == "number" and "min" in rules and v < rules["min"]) \
                    or (rules.get("integer") and v != v.to_integral_value()) \
                    or (ftype == "date" and "min" in rules and v < rules["min"])
                if bad:
                    die(f"{table}.{key}: value {v!r} violates its own definition {rules}")
            fields.append((table, key, ftype, rules, len(values) == len(rs)))

    # --- outputs -----------------------------------------------------------------------
    os.makedirs(out, exist_ok=True)
    src_accented = sum(is_accented(f"{c['firstname']} {c['lastname']}") for c in customers.values())
    with open(os.path.join(out, "source_totals.tsv"), "w", encoding="utf-8") as f:
        f.write(f"{len(customers)}\t{len(invoices)}\t{len(lines)}\t{src_accented}\n")
    with open(os.path.join(out, "tenant_ids.txt"), "w", encoding="utf-8") as f:
        f.write("".join(t["tenant_id"] + "\n" for t in tenants))
    with open(os.path.join(out, "manifest.tsv"), "w", encoding="utf-8") as f:
        for t in tenants:
            d = data[t["tenant_id"]]
            f.write("\t".join(str(x) for x in (
                t["tenant_id"], t["name"], t["slug"], t["email"], t["contact_name"],
                len(d["clients"]), len(d["projects"]), len(d["activities"]),
                accented[t["tenant_id"]], names_md5(d["clients"]),
                format(sum(p["custom_fields"]["total"] for p in d["projects"]), "f"))) + "\n")
    with open(os.path.join(out, "drop_tenants.sql"), "w", encoding="utf-8") as f:
        f.write("-- Drops the demo tenants of a previous run; a missing tenant (42704) is fine.\n"
                "-- Only tenants in the catalog are dropped: some messiah builds answer a missing\n"
                "-- tenant with XX000 instead of 42704.\n")
        for tid in [t["tenant_id"] for t in tenants] + ["demo_rollback"]:
            f.write(f"DO $$ BEGIN\n"
                    f"    IF EXISTS (SELECT 1 FROM messiah.tenants WHERE tenant_id = {lit(tid)}) THEN\n"
                    f"        PERFORM messiah_drop_tenant({lit(tid)});\n"
                    f"        RAISE NOTICE 'dropped tenant {tid} (left by a previous run)';\n"
                    f"    END IF;\n"
                    f"EXCEPTION WHEN undefined_object THEN NULL;\nEND $$;\n")
    with open(os.path.join(out, "create_tenants.sql"), "w", encoding="utf-8") as f:
        f.write("-- One call per tenant, each in autocommit: the database appears when it commits.\n")
        for n, t in enumerate(tenants):
            # the last agent's tenant goes to the server named by psql variable :second_server
            server = ":'second_server'" if n == len(tenants) - 1 else "NULL"
            f.write(
                "SELECT format('  created tenant %s: database %s on server %s, status %s, contact %s <%s>',\n"
                "              t->>'tenant_id', t->>'database', t->>'server', t->>'status', t->>'contact_name', t->>'contact_email')\n"
                f"FROM messiah_create_tenant(tenant_id => {lit(t['tenant_id'])}, name => {lit(t['name'])}, "
                f"slug => {lit(t['slug'])}, contact_email => {lit(t['email'])}, "
                f"contact_name => {lit(t['contact_name'])}, settings => :'settings', server => {server}) AS t;\n")
    with open(os.path.join(out, "define_fields.sql"), "w", encoding="utf-8") as f, \
            open(os.path.join(out, "fields.txt"), "w", encoding="utf-8") as txt:
        f.write("-- Typed custom fields, defined before the import (policy reject: every key\n"
                "-- imported must be defined). One call per field.\n")
        for t in tenants:
            for table, key, ftype, rules, required in fields:
                extra = f", is_required => {'true' if required else 'false'}"
                name = display.get(key, key.replace("_", " ").capitalize())
                f.write(f"SELECT messiah_define_field(tenant_id => {lit(t['tenant_id'])}, "
                        f"entity_table => {lit(table)}, field_name => {lit(key)}, "
                        f"field_type => {lit(ftype)}, display_name => {lit(name)}, "
                        f"validation_rules => {lit(dumps(rules))}{extra});\n")
        for table, key, ftype, rules, required in fields:
            shown = dumps(rules)
            if len(shown) > 70:
                shown = shown[:67] + "...]}"
            txt.write(f"  {table:<10} {key:<20} {ftype:<7} {'required' if required else 'optional':<8} {shown}\n")
    for tid, d in data.items():
        os.makedirs(os.path.join(out, tid), exist_ok=True)
        for table, rs in d.items():
            with open(os.path.join(out, tid, f"{table}.json"), "w", encoding="utf-8") as f:
                f.write("[\n" + ",\n".join(dumps(r) for r in rs) + "\n]\n")


if __name__ == "__main__":
    main()
