#!/usr/bin/env python3
"""Regenerate the seed corpora in fuzz/corpus/<target>/ from the repo's fixtures and examples.

Seeds are named `seed-*`; inputs kept from fuzzing runs (crash regressions, interesting finds)
are named otherwise and left alone. Run from anywhere: `python3 fuzz/seeds.py`.
The reference samples (Dokku outputs) come from the shared reference beside the repo when it
is there, and from the parser tests' own samples (below) always.
"""
import hashlib, hmac, os, pathlib, re, sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
CORPUS = ROOT / "fuzz" / "corpus"
SECRET = b"whsec_fuzz"  # fuzz/src/lib.rs SECRET
NOW = 1_750_000_000      # fuzz/src/lib.rs NOW


def write(target, name, data):
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    (d / f"seed-{name}").write_bytes(data)


def clear(target):
    d = CORPUS / target
    if d.is_dir():
        for p in d.glob("seed-*"):
            p.unlink()


def yaml_files(dir_):
    return sorted(p for p in dir_.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())


def sections(files):
    out = b""
    for rel, data in files:
        out += f"==> {rel} <==\n".encode() + data
        if not data.endswith(b"\n"):
            out += b"\n"
    return out


def loader():
    clear("loader")
    # Tenant files alone (beside the example environments).
    for p in yaml_files(ROOT / "examples"):
        if "/tenants/" in str(p) or "/templates/" in str(p):
            write("loader", f"tenant-{p.parent.parent.name}-{p.stem}", p.read_bytes())
    # Whole example repos.
    for repo in sorted((ROOT / "examples").iterdir()):
        files = [(str(p.relative_to(repo)), p.read_bytes()) for p in yaml_files(repo)
                 if p.relative_to(repo).parts[0] in ("environments", "tenants")]
        if files:
            write("loader", f"repo-{repo.name}", sections(files))
    # Plan fixtures: the shared environments plus each case's tenants.
    fixtures = ROOT / "tests" / "fixtures" / "plan"
    env = [(f"environments/{p.name}", p.read_bytes()) for p in yaml_files(fixtures / "_env" / "environments")]
    for case in sorted(fixtures.iterdir()):
        if case.name.startswith("_") or not (case / "tenants").is_dir():
            continue
        tenants = [(f"tenants/{p.name}", p.read_bytes()) for p in yaml_files(case / "tenants")]
        write("loader", f"plan-{case.name}", sections(env + tenants))
    # Hostile shapes the catalogue also covers (tests/it/hostile.rs).
    acme = (ROOT / "examples/dokku-fleet/tenants/acme.yaml").read_bytes()
    prod = (ROOT / "examples/dokku-fleet/environments/production.yaml").read_bytes()
    write("loader", "hostile-traversal", sections([("environments/production.yaml", prod),
        ("tenants/../../etc/passwd.yaml", acme), ("tenants/.hidden.yaml", acme),
        ("tenants/a;rm -rf ~.yaml", acme)]))
    write("loader", "hostile-link", sections([("environments/production.yaml", prod)])
          + b"==> tenants/acme.yaml <== link\n")
    write("loader", "hostile-anchors",
          b"base: &b { image: x:1 }\nname: A\nenvironment: production\ntier: pro\n"
          b"apps:\n  web:\n    <<: *b\n    domains: [a.mindroom.example]\n")
    write("loader", "hostile-tag", b"name: !!binary aGk=\nenvironment: production\ntier: pro\n")
    write("loader", "hostile-bomb", b"a: &a [x, x, x, x]\nb: &b [*a, *a, *a, *a]\nc: &c [*b, *b, *b, *b]\nd: [*c, *c, *c, *c]\n")
    write("loader", "hostile-confusable", acme.replace(b"name: ACME", b"name: \xd0\x90CME")
          + b"  domains: [\xd0\xb0cme.mindroom.example]\n")


# Dokku outputs: the parser tests' samples and reference/dokku.md's code blocks.
DOKKU_SAMPLES = [
    "dokku version 0.38.27\n",
    "dokku version v0.30.1-12-gabc\n",
    "[\"node-js-app\",\"python-app\"]\n",
    "null\n",
    "[]\n",
    "\x1b[1G{\"app-created-at\":\"1635126111\",\"created-at\":\"1635126111\",\"deploy-source\":\"docker-image\",\"deploy-source-metadata\":\"nginx:1.27\",\"locked\":\"false\"}\n",
    "=====> My Apps\n",
    "{\"A\":\"x y\",\"URL\":\"a\\u0026b\"}\n",
    "[{\"process_type\":\"web\",\"quantity\":1},{\"process_type\":\"worker\",\"quantity\":4}]\n",
    "-----> Scaling for node-js-app\nproctype: qty\n--------: ---\nweb:  1\nworker: 4\n",
    "=====> Postgres services\nacme-db\nbolt-db\n",
    "-v /var/lib/dokku/data/storage/a:/app/storage -v /b:/c",
    "\x1b[1G\x1b[K-----> WARNING\n\x1b[31mred\x1b[0m\n",
    " !     App acme does not exist\n",
]


def dokku():
    clear("dokku_parse")
    for i, s in enumerate(DOKKU_SAMPLES):
        write("dokku_parse", f"test-{i:02}", s)
    ref = ROOT.parent / "shared" / "reference" / "dokku.md"
    for cand in (ref, pathlib.Path("/work/shared/reference/dokku.md")):
        if cand.is_file():
            ref = cand
            break
    if ref.is_file():
        blocks = re.findall(r"```[a-z]*\n(.*?)```", ref.read_text(), re.S)
        for i, b in enumerate(blocks):
            write("dokku_parse", f"reference-{i:02}", b)


def webhook():
    clear("webhook")
    for p in sorted((ROOT / "tests/fixtures/stripe").rglob("*.json")):
        body = p.read_bytes()
        sig = hmac.new(SECRET, f"{NOW}.".encode() + body, hashlib.sha256).hexdigest()
        write("webhook", f"{p.parent.name}-{p.stem}", f"t={NOW},v1={sig}\n".encode() + body)
    write("webhook", "unsigned", b"\n{\"id\":\"evt_1\",\"type\":\"customer.subscription.updated\",\"created\":1}")
    write("webhook", "v0-only", b"t=1750000000,v0=abcd\n{}")


def yaml_edit():
    clear("yaml_edit")
    selectors = [b"\x01\x1f\x00", b"\x0a\x03\x02", b"\x12\x10\x04", b"\x00\x08\x07", b"\x1b\xff\x05"]
    files = [p for p in yaml_files(ROOT / "examples") if "/tenants/" in str(p) or "/templates/" in str(p)]
    files += yaml_files(ROOT / "tests/fixtures/plan")
    for i, p in enumerate(sorted(set(files))):
        if "/tenants/" not in str(p) and "/templates/" not in str(p):
            continue
        sel = selectors[i % len(selectors)]
        rel = "-".join(p.relative_to(ROOT).parts[-3:]).replace(".yaml", "")
        write("yaml_edit", rel, sel + p.read_bytes())
    write("yaml_edit", "flow", b"\x09\x07\x01{name: A, tier: pro, billing: {status: active}}\n")
    write("yaml_edit", "crlf", b"\x01\x01\x00name: A\r\ntier: 'pro' # the tier\r\nbilling:\r\n")
    write("yaml_edit", "quoted", b"\x02\x03\x03tier: \"pro\"  # c\nstate: active\nbilling: {customer: 'cus_1'}\n")


if __name__ == "__main__":
    loader(); dokku(); webhook(); yaml_edit()
    for t in sorted(CORPUS.iterdir()):
        print(t.name, len(list(t.iterdir())), file=sys.stderr)
