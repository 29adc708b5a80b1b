"""Known-answer tests for the bundled semgrep rules, run with the real semgrep binary.

Each case is a snippet whose expected findings are marked inline: a line ending in
`# ruleid: <id>` must be reported by exactly that rule, and no other line may be reported
(the unmarked lines are the negative cases). One semgrep run scans every snippet.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from delegation_machine.engine.rules import (
    BUNDLED_RULE_PREFIX,
    bundled_rule_id,
    bundled_semgrep_rules,
)

REPO = Path(__file__).resolve().parents[3]

CASES: dict[str, str] = {
    "dm-yaml-unsafe-load": """
import yaml

def load(text, handle):
    a = yaml.load(text)  # ruleid: dm-yaml-unsafe-load
    b = yaml.load(text, Loader=yaml.FullLoader)  # ruleid: dm-yaml-unsafe-load
    c = yaml.load(handle, Loader=yaml.Loader)  # ruleid: dm-yaml-unsafe-load
    d = yaml.unsafe_load(text)  # ruleid: dm-yaml-unsafe-load
    e = yaml.load(text, yaml.UnsafeLoader)  # ruleid: dm-yaml-unsafe-load
    ok1 = yaml.safe_load(text)
    ok2 = yaml.load(text, Loader=yaml.SafeLoader)
    ok3 = yaml.load(text, Loader=yaml.CSafeLoader)
    ok4 = yaml.dump({"a": 1})
    return a, b, c, d, e, ok1, ok2, ok3, ok4
""",
    "dm-subprocess-shell-true": """
import subprocess

def run(path, name):
    subprocess.run(f"gzip -kf {path}", shell=True, check=True)  # ruleid: dm-subprocess-shell-true
    subprocess.check_output("ls " + name, shell=True)  # ruleid: dm-subprocess-shell-true
    subprocess.Popen(name, cwd="/", shell=True)  # ruleid: dm-subprocess-shell-true
    subprocess.call(name, shell=True)  # ruleid: dm-subprocess-shell-true
    subprocess.run(["gzip", "-kf", str(path)], check=True)
    subprocess.run(["ls"], shell=False)
    subprocess.check_call(["true"])
""",
    "dm-eval-exec-nonliteral": """
def evaluate(rule, subtotal, source):
    value = eval(rule, {"__builtins__": {}}, {"subtotal": subtotal})  # ruleid: dm-eval-exec-nonliteral
    exec(source)  # ruleid: dm-eval-exec-nonliteral
    eval(compile(source, "x", "eval"))  # ruleid: dm-eval-exec-nonliteral
    constant = eval("1 + 2")
    exec("pass")
    literal_eval = __import__("ast").literal_eval(rule)
    return value, constant, literal_eval
""",
    "dm-pickle-loads": """
import json
import pickle

def restore(blob, handle):
    a = pickle.loads(blob)  # ruleid: dm-pickle-loads
    b = pickle.load(handle)  # ruleid: dm-pickle-loads
    c = pickle.Unpickler(handle).load()  # ruleid: dm-pickle-loads
    saved = pickle.dumps(a)
    data = json.loads(blob)
    return a, b, c, saved, data
""",
    "dm-weak-hash": """
import hashlib

def digests(password, salt, key):
    a = hashlib.md5(password.encode()).hexdigest()  # ruleid: dm-weak-hash
    b = hashlib.sha1((salt + password).encode())  # ruleid: dm-weak-hash
    c = hashlib.new("md5", password.encode())  # ruleid: dm-weak-hash
    ok1 = hashlib.md5(key.encode(), usedforsecurity=False).hexdigest()
    ok2 = hashlib.sha1(key.encode(), usedforsecurity=False)
    ok3 = hashlib.sha256(password.encode())
    ok4 = hashlib.new("sha256", password.encode())
    return a, b, c, ok1, ok2, ok3, ok4
""",
    "dm-requests-verify-false": """
import requests
from unittest import mock

def fetch(url, session):
    a = requests.get(url, timeout=5, verify=False)  # ruleid: dm-requests-verify-false
    b = requests.post(url, json={}, verify=False)  # ruleid: dm-requests-verify-false
    c = requests.request("GET", url, verify = False)  # ruleid: dm-requests-verify-false
    ok1 = requests.get(url, timeout=5)
    ok2 = requests.get(url, verify=True)
    ok3 = requests.get(url, verify="/etc/ssl/private-ca.pem")
    return a, b, c, ok1, ok2, ok3

def through_a_session(session, url, body, make_client):
    # a session or client from elsewhere: every verb, any receiver
    a = session.get(url, verify=False)  # ruleid: dm-requests-verify-false
    b = session.post(url, data=body, verify=False)  # ruleid: dm-requests-verify-false
    c = session.put(url, data=body, timeout=3, verify=False)  # ruleid: dm-requests-verify-false
    d = session.patch(url, json=body, verify=False)  # ruleid: dm-requests-verify-false
    e = session.delete(url, verify=False)  # ruleid: dm-requests-verify-false
    f = session.head(url, verify=False)  # ruleid: dm-requests-verify-false
    g = session.request("GET", url, verify=False)  # ruleid: dm-requests-verify-false
    h = requests.Session().get(url, verify=False)  # ruleid: dm-requests-verify-false
    i = make_client().post(url, verify=False)  # ruleid: dm-requests-verify-false
    return a, b, c, d, e, f, g, h, i

class Api:
    def __init__(self, session):
        self.session = session

    def ping(self, url):
        return self.session.get(url, verify=False)  # ruleid: dm-requests-verify-false

def look_alikes(session, url, options, settings, client, get, verify):
    # nothing below turns verification off through a keyword verify=False
    ok1 = session.get(url, verify=True)
    ok2 = session.get(url, verify="/etc/ssl/private-ca.pem")
    ok3 = session.post(url, timeout=5)
    ok4 = options.get("verify", False)
    ok5 = settings.get("verify_ssl", False)
    ok6 = client.get(url, verify_ssl=False)
    ok7 = session.get(url, headers={"verify": False})
    ok8 = client.get_verify(url, verify=False)
    ok9 = client.verify(url, strict=False)
    ok10 = session.fetch(url, verify=False)
    ok11 = get(url, verify=False)
    ok12 = session.get(url, verify=verify)
    ok13 = session.get(url, False)
    with mock.patch.object(requests, "get") as fake:
        fake.assert_called_once_with(url, verify=False)
    return ok1, ok2, ok3, ok4, ok5, ok6, ok7, ok8, ok9, ok10, ok11, ok12, ok13
""",
    "dm-tempfile-mktemp": """
import tempfile

def stage(folder):
    a = tempfile.mktemp()  # ruleid: dm-tempfile-mktemp
    b = tempfile.mktemp(suffix=".json", dir=folder)  # ruleid: dm-tempfile-mktemp
    fd, ok1 = tempfile.mkstemp(suffix=".json", dir=folder)
    ok2 = tempfile.NamedTemporaryFile(delete=False)
    ok3 = tempfile.mkdtemp()
    return a, b, fd, ok1, ok2, ok3
""",
    "dm-insecure-random-secret": """
import random
import string

ALPHABET = string.ascii_letters + string.digits


def new_session_token(length=32):
    return "".join(random.choice(ALPHABET) for _ in range(length))  # ruleid: dm-insecure-random-secret


def make_password_reset():
    return random.getrandbits(128)  # ruleid: dm-insecure-random-secret


def setup_account(user):
    api_key = random.randint(10**20, 10**21)  # ruleid: dm-insecure-random-secret
    user_salt = "%016x" % random.getrandbits(64)  # ruleid: dm-insecure-random-secret
    return api_key, user_salt


def shuffle_deck(cards, seed):
    random.shuffle(cards)
    rng = random.Random(seed)
    chosen = rng.sample(cards, 2)
    jitter = random.uniform(0, 1)
    return chosen, jitter


def new_csrf_token():
    return random.SystemRandom().choice(ALPHABET)
""",
}

FIXABLE = {
    "dm-yaml-unsafe-load",
    "dm-weak-hash",
    "dm-requests-verify-false",
    "dm-insecure-random-secret",
}

_MARKER = re.compile(r"#\s*ruleid:\s*(dm-[a-z0-9-]+)\s*$")


def expected_findings(source: str) -> set[tuple[int, str]]:
    """(1-based line, rule id) for every line carrying a `# ruleid:` marker."""
    found = set()
    for number, line in enumerate(source.splitlines(), start=1):
        match = _MARKER.search(line)
        if match:
            found.add((number, match.group(1)))
    return found


@pytest.fixture(scope="module")
def case_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One semgrep run over every snippet; returns {case: [results]} and the raw report."""
    from .support import run_semgrep  # the real binary, bundled rules, offline

    folder = tmp_path_factory.mktemp("rule-cases")
    paths = []
    for rule_id, source in CASES.items():
        path = folder / f"{rule_id.replace('-', '_')}.py"
        path.write_text(source.lstrip("\n"), encoding="utf-8")
        paths.append(path)
    report = run_semgrep(paths, folder)
    by_case: dict[str, list[dict[str, Any]]] = {rule_id: [] for rule_id in CASES}
    for result in report["results"]:
        case = Path(result["path"]).stem.replace("_", "-")
        by_case[case].append(result)
    return {"by_case": by_case, "report": report, "folder": folder}


def test_every_rule_file_is_valid_yaml_with_stable_prefixed_ids() -> None:
    rule_files = bundled_semgrep_rules()
    assert len(rule_files) == len(CASES)
    ids = set()
    for path in rule_files:
        text = path.read_text(encoding="utf-8")
        found = re.findall(r"^  - id: (\S+)$", text, flags=re.MULTILINE)
        assert len(found) == 1, path
        assert found[0].startswith(BUNDLED_RULE_PREFIX)
        assert "languages: [python]" in text
        ids.add(found[0])
    assert ids == set(CASES)


@pytest.mark.parametrize("rule_id", sorted(CASES))
def test_rule_reports_exactly_the_marked_lines(rule_id: str, case_report: dict[str, Any]) -> None:
    source = CASES[rule_id].lstrip("\n")
    expected = expected_findings(source)
    assert expected, "a case needs at least one positive line"
    results = case_report["by_case"][rule_id]
    actual = {(r["start"]["line"], bundled_rule_id(r["check_id"])) for r in results}
    assert actual == expected
    assert not case_report["report"]["errors"]


@pytest.mark.parametrize("rule_id", sorted(CASES))
def test_fix_is_offered_exactly_where_a_safe_one_exists(
    rule_id: str, case_report: dict[str, Any]
) -> None:
    results = case_report["by_case"][rule_id]
    fixes = [r["extra"].get("fix") for r in results]
    if rule_id in FIXABLE:
        assert all(isinstance(fix, str) and fix for fix in fixes)
    else:
        assert fixes == [None] * len(results)


def test_applied_fixes_parse_and_clear_every_finding(
    case_report: dict[str, Any],
    semgrep_scan: Callable[[list[Path], Path], dict[str, Any]],
    tmp_path: Path,
) -> None:
    targets = []
    for rule_id in sorted(FIXABLE):
        source = CASES[rule_id].lstrip("\n").encode("utf-8")
        results = sorted(case_report["by_case"][rule_id], key=lambda r: r["start"]["offset"])
        fixed = source
        for result in reversed(results):
            start, end = result["start"]["offset"], result["end"]["offset"]
            fixed = fixed[:start] + result["extra"]["fix"].encode("utf-8") + fixed[end:]
        ast.parse(fixed)
        target = tmp_path / f"{rule_id.replace('-', '_')}_fixed.py"
        target.write_bytes(fixed)
        targets.append(target)
    assert semgrep_scan(targets, tmp_path)["results"] == []


def test_messages_say_what_is_wrong_and_what_to_do(case_report: dict[str, Any]) -> None:
    for results in case_report["by_case"].values():
        for result in results:
            message = result["extra"]["message"]
            assert len(message) > 60
            assert re.search(r"\b(Use|use|Pass|Keep|Create|Parse|Store)\b", message), message


def test_the_sample_readme_lists_every_seeded_finding_and_semgrep_finds_them(
    semgrep_scan: Callable[[list[Path], Path], dict[str, Any]],
) -> None:
    from .support import SAMPLE, SAMPLES_README

    section = SAMPLES_README.read_text(encoding="utf-8").split("### Seeded semgrep findings")[1]
    section = section.split("###")[0]
    listed = {
        (path, int(line), rule)
        for path, line, rule in re.findall(r"\| `([^`:]+):(\d+)` \| `(dm-[a-z0-9-]+)` \|", section)
    }
    assert len(listed) >= len(CASES)
    assert {rule for _, _, rule in listed} == set(CASES)
    files = sorted(
        {SAMPLE / path for path, _, _ in listed} | set((SAMPLE / "inventory").glob("*.py"))
    )
    report = semgrep_scan(files, SAMPLE)
    found = {
        (
            Path(r["path"]).resolve().relative_to(SAMPLE).as_posix(),
            r["start"]["line"],
            bundled_rule_id(r["check_id"]),
        )
        for r in report["results"]
    }
    assert found == listed
