"""Runs schemathesis against a live toolsmith server, seeded with data, and judges the outcome.

Started by `dev/schemathesis` with the virtualenv's interpreter. For one storage backend it:
starts `toolsmith serve` on a free loopback port with a fresh data directory, signs in with the
command the first start prints, seeds the organization through the API (tools with tags, env
vars, a pushed repository, published versions, invocations), runs `st run` against Amigo's
document and against the server's own `/openapi.json`, stops the server and compares every
failure with the known disagreements (`known-disagreements.tsv`). Prints one summary line per
document and exits non-zero when a failure is not on that list.
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
AMIGO_DOCUMENT = ROOT / "crates/toolsmith/tests/contract/amigo-tool-openapi.json"
KNOWN = HERE / "known-disagreements.tsv"
ORG = "default"


def log(message: str) -> None:
    print(f"schemathesis: {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# The server


class Server:
    """A `toolsmith serve` child with a data directory of its own."""

    def __init__(self, binary: Path, work: Path, database_url: str | None) -> None:
        self.data = work / "data"
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = work / "server.log"
        args = [str(binary), "serve", "--data-dir", str(self.data), "--listen", f"127.0.0.1:{self.port}"]
        # Schemathesis sends hundreds of requests per operation; Amigo's per-minute numbers
        # would answer most of them 429.
        args += ["--rate-limits", "off", "--log-format", "json"]
        if database_url:
            args += ["--database-url", database_url]
        self.log_file = open(self.log_path, "wb")
        self.child = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self.log_file)
        self.welcome = self._read_welcome()
        # The rest of stdout is drained so that the server never blocks on a full pipe.
        threading.Thread(target=self._drain, daemon=True).start()
        self._wait_healthy()

    def _read_welcome(self) -> str:
        assert self.child.stdout is not None
        out = ""
        while "x-user-id" not in out:
            line = self.child.stdout.readline()
            if not line:
                raise SystemExit(f"toolsmith exited before printing its sign-in command; see {self.log_path}")
            out += line.decode()
        return out

    def _drain(self) -> None:
        assert self.child.stdout is not None
        for _ in self.child.stdout:
            pass

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{self.base}/healthz", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if self.child.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"toolsmith did not become healthy; see {self.log_path}")
            time.sleep(0.1)

    def sign_in(self) -> tuple[str, str]:
        """Runs the printed sign-in command as a user would paste it; the admin's id and token."""
        start = self.welcome.index("curl -s")
        command = "\n".join(self.welcome[start:].splitlines()[:2])
        answer = subprocess.run(["sh", "-c", command], check=True, capture_output=True, text=True).stdout
        user = re.search(r"x-user-id: ([0-9a-f]{24})", command)
        assert user, command
        return user.group(1), json.loads(answer)["id_token"]

    def stop(self) -> None:
        if self.child.poll() is None:
            self.child.terminate()
            try:
                self.child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.child.kill()
                self.child.wait()
        self.log_file.close()


def free_port() -> int:
    """A loopback port that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------------
# Seeding


@dataclass
class Seed:
    """What the seeding made; the values schemathesis is given for path parameters."""

    user_id: str
    token: str
    tools: list[str] = field(default_factory=list)
    doomed_tools: list[str] = field(default_factory=list)
    versions: list[str] = field(default_factory=list)
    invocations: list[str] = field(default_factory=list)
    builds: list[str] = field(default_factory=list)


class Api:
    """The organization's API with the admin's token."""

    def __init__(self, base: str, token: str) -> None:
        self.api = f"{base}/v1/{ORG}"
        self.token = token

    def call(self, method: str, path: str, body: object | None = None, expect: int = 200, timeout: float = 600):
        """Sends one request; stops the run unless it answers `expect`. The body and headers."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.api}{path}", data=data, method=method)
        request.add_header("Authorization", f"Bearer {self.token}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                status, raw, headers = response.status, response.read(), response.headers
        except urllib.error.HTTPError as error:
            status, raw, headers = error.code, error.read(), error.headers
        if status != expect:
            raise SystemExit(f"seeding: {method} {path} answered {status}, expected {expect}: {raw[:2000]!r}")
        return (json.loads(raw) if raw else None), headers


def seed(server: Server, work: Path) -> Seed:
    """Fills the organization through the API and git, as a user would."""
    user_id, token = server.sign_in()
    api = Api(server.base, token)
    made = Seed(user_id=user_id, token=token)

    def create(name: str, description: str, tags: dict[str, str | None]) -> str:
        answer, _ = api.call("POST", "/tool/", {"name": name, "description": description, "tags": tags}, 201)
        return answer["id"]

    echo = create("echo", "Echoes its input back.", {"team": "core", "tier": None})
    counter = create("counter", "Counts its calls.", {"team": "core", "kind": "demo"})
    failing = create("failing", "Raises on every call.", {"team": "qa"})
    weather = create("get_weather", "Current weather for a city.", {"team": "weather"})
    made.tools += [echo, counter, failing, weather]
    # Tools only for the deprecating operations, so that the others keep finding live tools.
    made.doomed_tools += [create(f"doomed_{n}", "Deprecated by the run.", {"team": "scratch"}) for n in range(3)]
    retired = create("retired", "Deprecated before the run.", {"team": "core"})
    api.call("DELETE", f"/tool/{retired}", expect=204)
    made.tools.append(retired)

    api.call(
        "POST",
        f"/tool/{weather}/envvar",
        {
            "inserts": [
                {"name": "WEATHER_API_BASE", "value": "https://weather.example", "is_secret": False},
                {"name": "WEATHER_API_KEY", "value": "s3cret", "is_secret": True},
            ]
        },
        204,
    )
    api.call("POST", f"/tool/{weather}", {"description": "Current weather and a forecast."}, 204)

    # The organization's repository, with example projects pushed over HTTP.
    repo = work / "repo"
    git = ["git", "-c", "user.name=Contract", "-c", "user.email=contract@example.invalid"]
    git += ["-c", f"http.extraHeader=Authorization: Bearer {token}"]
    subprocess.run(git + ["clone", "--quiet", f"{api.api}/tool/git", str(repo)], check=True)
    projects = {echo: "no_deps", counter: "counter", failing: "raises"}
    for project in projects.values():
        shutil.copytree(ROOT / "examples/tools" / project, repo / project)
    subprocess.run(git + ["-C", str(repo), "add", "-A"], check=True)
    subprocess.run(git + ["-C", str(repo), "commit", "--quiet", "-m", "Add examples"], check=True)
    subprocess.run(git + ["-C", str(repo), "push", "--quiet", "origin", "main"], check=True)

    for tool, project in projects.items():
        answer, headers = api.call(
            "POST", f"/tool/{tool}/version", {"project_path": project, "bump_type": "major"}, 201
        )
        made.versions.append(answer["new_version"])
        made.builds.append(headers["X-Toolsmith-Build-Id"])

    # Invocations of every source kind: the API's own (direct), a conversation's, a simulation's.
    metadata = {"type": "tool-call-state", "current_state_machine_and_version": ["support", 3], "state_name": "lookup"}
    sources = [
        None,
        {
            "type": "regular-conversation",
            "user_id": user_id,
            "conversation_id": "0123456789abcdef01234567",
            "interaction_id": "0123456789abcdef01234568",
            "invocation_metadata": metadata,
        },
        {
            "type": "simulation-conversation",
            "simulation_unit_test_set_run_id": "0123456789abcdef01234569",
            "unit_test_id": None,
            "run_index": 0,
            "invocation_metadata": metadata,
        },
    ]

    def invoke(tool: str, parameters: list[dict]) -> None:
        inputs = []
        for n, p in enumerate(parameters):
            one = {
                "input_parameters": p,
                "invocation_mode": "regular",
                "nonsensitive_user_variables": {},
                "sensitive_user_variables": {},
            }
            if sources[n % len(sources)] is not None:
                one["invocation_source"] = sources[n % len(sources)]
            inputs.append(one)
        api.call("POST", f"/tool/{tool}/version/1.0.0/invoke", {"inputs": inputs})

    invoke(echo, [{"text": "Ada"}, {"text": "Grace"}, {"text": "Hopper"}])
    invoke(counter, [{}, {}, {}])
    invoke(failing, [{"reason": "rain"}, {}, {"reason": "snow"}])
    every_kind = "&".join(
        f"invocation_source_type={kind}" for kind in ("regular-conversation", "simulation-conversation", "direct")
    )
    listed, _ = api.call("GET", f"/tool/invocation?limit=100&{every_kind}")
    made.invocations = [item["id"] for item in listed["tool_invocations"]]
    if len(made.invocations) != 9:
        raise SystemExit(f"seeding: 9 invocations were made, the listing shows {len(made.invocations)}")
    return made


# ---------------------------------------------------------------------------------------------
# Schemathesis


def toml_string(value: str) -> str:
    """A TOML basic string (JSON's string syntax is a subset of it)."""
    return json.dumps(value)


def write_config(path: Path, server: Server, made: Seed, examples: int) -> None:
    """The run's `schemathesis.toml`: where the server is, who signs, which ids exist."""
    lines = [
        f"base-url = {toml_string(server.base)}",
        # One worker: schemathesis's workers are threads, and CPython 3.11 builds ASTs with an
        # interpreter-wide recursion counter, which concurrent parses (hypothesis parses its
        # own sources to describe strategies) trip over with a spurious SystemError.
        "workers = 1",
        # Health checks of the data generation, not of the API: on a busy machine generation is
        # slow, and an operation whose values are mostly filtered out just gets fewer cases.
        'suppress-health-check = ["too_slow", "filter_too_much"]',
        # Fixed headers rather than `[auth]`: Amigo's document puts the bearer token, `X-ORG-ID`
        # and Basic into one security requirement, which schemathesis cannot satisfy at once,
        # and would otherwise send generated values for the rest.
        "[headers]",
        f"Authorization = {toml_string('Bearer ' + made.token)}",
        f'X-ORG-ID = {toml_string(ORG)}',
        "[generation]",
        f"max-examples = {examples}",
        # Failures are judged by what they are, not by a minimal example; shrinking would spend
        # most of the run on known disagreements. Nothing is kept between runs either.
        "no-shrink = true",
        'database = "none"',
        "[dictionaries.tools]",
        f"values = {json.dumps(made.tools)}",
        "[dictionaries.doomed]",
        f"values = {json.dumps(made.doomed_tools)}",
        "[dictionaries.invocations]",
        f"values = {json.dumps(made.invocations)}",
        "[dictionaries.builds]",
        f"values = {json.dumps(made.builds)}",
        "[dictionaries.versions]",
        f"values = {json.dumps(sorted(set(made.versions)))}",
        "[dictionaries.specifiers]",
        'values = ["==1.0.0", ">=1,<2", "~=1.0", "==9.9.9"]',
        "[parameters]",
        f'"path.organization" = {toml_string(ORG)}',
        '"path.tool_id" = { dictionary = "tools", probability = 0.8 }',
        '"path.invocation_id" = { dictionary = "invocations", probability = 0.8 }',
        '"path.build_id" = { dictionary = "builds", probability = 0.8 }',
        '"path.version" = { dictionary = "versions", probability = 0.5 }',
        '"path.versions" = { dictionary = "specifiers", probability = 0.5 }',
        f'"path.user_id" = {toml_string(made.user_id)}',
        # Deprecating operations get tools of their own, so that the rest keep live tools.
        "[[operations]]",
        'include-method = "DELETE"',
        "[operations.parameters]",
        '"path.tool_id" = { dictionary = "doomed", probability = 0.8 }',
    ]
    path.write_text("\n".join(lines) + "\n")


@dataclass
class Failure:
    """One failed check of one test case."""

    operation: str
    check: str
    code: str
    title: str
    message: str
    status: int | None
    body: str
    request: str

    def subject(self) -> str:
        """What a known disagreement's pattern is matched against."""
        return f"{self.title}\n{self.message}\n{self.status}\n{self.body}"

    def problems(self) -> list[str]:
        """The entries of a 422 answer as `loc: msg` lines (`query.sort_by.0: Value error, ...`).

        Each entry must be known on its own, so that a known problem does not hide an unknown
        one reported in the same answer.
        """
        if self.status != 422:
            return []
        try:
            detail = json.loads(self.body)["detail"]
            return [".".join(str(part) for part in item["loc"]) + ": " + str(item["msg"]) for item in detail]
        except (ValueError, KeyError, TypeError):
            return []


@dataclass
class Known:
    """A line of `known-disagreements.tsv`."""

    line: int
    document: str
    operation: str
    check: str
    pattern: re.Pattern[str]
    reason: str
    seen: int = 0

    @property
    def temporary(self) -> bool:
        """A server problem that is known but not yet fixed, rather than a disagreement."""
        return self.reason.lower().startswith("temporary")

    def applies(self, document: str, failure: Failure) -> bool:
        """Whether the entry speaks of this document, operation and check (its pattern aside)."""
        return (
            self.document in ("*", document)
            and self.operation in ("*", failure.operation)
            and self.check in ("*", failure.check)
        )


def classify(document: str, failure: Failure, known: list[Known]) -> Known | None:
    """The known disagreement that explains the failure, if one does.

    A 422 answer is explained only when every problem it lists is matched by some entry.
    """
    candidates = [k for k in known if k.applies(document, failure)]
    problems = failure.problems()
    if problems:
        explained = [next((k for k in candidates if k.pattern.search(p)), None) for p in problems]
        return explained[0] if all(explained) else None
    return next((k for k in candidates if k.pattern.search(failure.subject())), None)


def load_known(path: Path) -> list[Known]:
    """Reads the known disagreements; a malformed line stops the run."""
    entries = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) != 5 or not all(f.strip() for f in fields):
            raise SystemExit(f"{path}:{number}: expected 5 tab-separated fields, got {len(fields)}")
        document, operation, check, pattern, reason = (f.strip() for f in fields)
        entries.append(Known(number, document, operation, check, re.compile(pattern, re.S), reason))
    return entries


def read_failures(ndjson: Path) -> tuple[list[Failure], list[str]]:
    """Every failed check and every error (as text) that the run's event stream records."""
    failures: list[Failure] = []
    errors: list[str] = []
    for line in ndjson.read_text().splitlines():
        event = json.loads(line)
        if "NonFatalError" in event:
            error = event["NonFatalError"]
            errors.append(f"{error.get('label')}: {error['value']['type']}: {error['value']['message']}")
        elif "FatalError" in event:
            errors.append(f"fatal: {json.dumps(event['FatalError'])[:2000]}")
        if "ScenarioFinished" not in event:
            continue
        recorder = event["ScenarioFinished"]["recorder"]
        interactions = recorder.get("interactions", {})
        for case_id, checks in recorder.get("checks", {}).items():
            for check in checks:
                if check["status"] != "failure":
                    continue
                info = check["failure_info"]["failure"]
                status, body, request = None, "", ""
                interaction = interactions.get(case_id)
                if interaction:
                    request = f"{interaction['request']['method']} {interaction['request']['uri']}"
                    response = interaction.get("response")
                    if response:
                        status = response["status_code"]
                        content = response.get("content") or {}
                        if "$base64" in content:
                            raw = base64.b64decode(content["$base64"])
                            try:
                                body = raw.decode("utf-8")
                            except UnicodeDecodeError:
                                body = f"<{len(raw)} bytes, not UTF-8>"
                        elif "string" in content:
                            body = content["string"]
                failures.append(
                    Failure(
                        operation=info.get("operation") or recorder["label"],
                        check=check["name"],
                        code=info.get("code", ""),
                        title=info.get("title", ""),
                        message=info.get("message", ""),
                        status=status,
                        body=body,
                        request=request,
                    )
                )
    return failures, errors


@dataclass
class Outcome:
    """What one document's run found, judged against the known disagreements."""

    document: str
    cases: int = 0
    known: list[tuple[Failure, Known]] = field(default_factory=list)
    unknown: list[Failure] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    seed: int | None = None

    @property
    def ok(self) -> bool:
        """Nothing but known disagreements."""
        return not self.unknown and not self.errors


def run_schemathesis(
    st: Path,
    document: str,
    location: str,
    config: Path,
    server: Server,
    reports: Path,
    seed: int | None,
    known: list[Known],
) -> Outcome:
    """Runs `st run` and collects what it reports: generated cases, failures and errors."""
    shutil.rmtree(reports, ignore_errors=True)
    reports.mkdir(parents=True)
    command = [str(st), "--config-file", str(config), "run", location, "--url", server.base]
    # Every check, and every case of a scenario even after one failed, so that a known
    # disagreement cannot hide another failure of the same operation.
    command += ["--checks", "all", "--continue-on-failure", "--no-color"]
    command += ["--report", "ndjson,json", "--report-dir", str(reports)]
    command += ["--report-ndjson-path", str(reports / "events.ndjson")]
    command += ["--report-json-path", str(reports / "run.json")]
    if seed is not None:
        command += ["--seed", str(seed)]
    started, cpu = time.monotonic(), resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(reports / "schemathesis.log", "wb") as output:
        code = subprocess.run(command, stdout=output, stderr=subprocess.STDOUT, cwd=reports).returncode
    outcome = Outcome(document=document, seconds=time.monotonic() - started)
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    outcome.cpu_seconds = used.ru_utime + used.ru_stime - cpu.ru_utime - cpu.ru_stime
    run_file = reports / "run.json"
    if code not in (0, 1) or not run_file.exists():
        tail = (reports / "schemathesis.log").read_text(errors="replace")[-4000:]
        outcome.errors.append(f"st exited with {code}:\n{tail}")
        return outcome
    summary = json.loads(run_file.read_text())
    outcome.cases, outcome.seed = summary["test_cases"]["generated"], summary.get("seed")
    failures, errors = read_failures(reports / "events.ndjson")
    if not summary.get("complete"):
        errors.append(f"the run did not complete: {summary.get('stop_reason')}")
    if not errors:
        # Errors that the event stream did not carry; the summary counts them by title.
        errors += [f"{error['title']} ({error['count']})" for error in summary.get("errors", [])]
    judge(outcome, failures, errors, known)
    return outcome


def judge(outcome: Outcome, failures: list[Failure], errors: list[str], known: list[Known]) -> None:
    """Sorts the failures and errors of a run into known disagreements and everything else."""
    document = outcome.document
    for failure in failures:
        entry = classify(document, failure, known)
        if entry is None:
            outcome.unknown.append(failure)
        else:
            entry.seen += 1
            outcome.known.append((failure, entry))
    for error in errors:
        as_failure = Failure("*", "error", "", "error", error, None, "", "")
        entry = classify(document, as_failure, known)
        if entry is None:
            outcome.errors.append(error)
        else:
            entry.seen += 1
            outcome.known.append((as_failure, entry))


def report(outcome: Outcome, reports: Path) -> None:
    """Prints the failures that are not known, one per operation, check and title."""
    groups: dict[tuple[str, str, str], list[Failure]] = {}
    for failure in outcome.unknown:
        groups.setdefault((failure.operation, failure.check, failure.title), []).append(failure)
    for (operation, check, title), items in sorted(groups.items()):
        first = items[0]
        print(f"\nFAILURE {outcome.document}: {operation} [{check}] {title} ({len(items)} cases)")
        print(f"  {first.message.strip()[:800]}".replace("\n", "\n  "))
        if first.request:
            print(f"  request: {first.request[:400]}")
        if first.status is not None:
            print(f"  answer: {first.status} {first.body[:600]}")
    for error in outcome.errors:
        print(f"\nERROR {outcome.document}: {error[:3000]}")
    if not outcome.ok:
        print(f"  (schemathesis's own report: {reports / 'schemathesis.log'}; replay with --seed {outcome.seed})")


def main() -> int:
    """Runs both documents against one seeded server; 0 when nothing but known disagreements."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", type=Path, required=True, help="the toolsmith executable")
    parser.add_argument("--st", type=Path, required=True, help="schemathesis's `st` executable")
    parser.add_argument("--reports", type=Path, required=True, help="where the reports of this backend go")
    parser.add_argument("--backend", default="sqlite", help="a name for the storage backend")
    parser.add_argument("--database-url", help="serve from this PostgreSQL database instead of SQLite")
    parser.add_argument("--amigo-document", type=Path, default=AMIGO_DOCUMENT)
    parser.add_argument("--known", type=Path, default=KNOWN, help="the known disagreements")
    parser.add_argument("--examples", type=int, default=150, help="cases per operation and phase")
    parser.add_argument("--seed", type=int, help="schemathesis's seed (default: a new one)")
    args = parser.parse_args()
    args.binary, args.st, args.reports = args.binary.resolve(), args.st.resolve(), args.reports.resolve()

    if not args.amigo_document.is_file():
        raise SystemExit(f"Amigo's document is missing: {args.amigo_document}")
    known = load_known(args.known)
    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory(prefix="toolsmith-schemathesis-") as scratch:
        work = Path(scratch)
        started = time.monotonic()
        server = Server(args.binary, work, args.database_url)
        try:
            made = seed(server, work)
            log(f"{args.backend}: server on {server.base} seeded in {time.monotonic() - started:.1f}s")
            config = work / "schemathesis.toml"
            write_config(config, server, made, args.examples)
            documents = [
                ("amigo", str(args.amigo_document.resolve())),
                ("toolsmith", f"{server.base}/openapi.json"),
            ]
            for name, location in documents:
                reports = args.reports / name
                outcome = run_schemathesis(args.st, name, location, config, server, reports, args.seed, known)
                if server.child.poll() is not None:
                    outcome.errors.append(f"the server exited during the run; see {args.reports / 'server.log'}")
                report(outcome, reports)
                outcomes.append(outcome)
        finally:
            server.stop()
            # The server's log outlives the scratch directory, for a failure to be read.
            args.reports.mkdir(parents=True, exist_ok=True)
            shutil.copy(server.log_path, args.reports / "server.log")

    print()
    for outcome in outcomes:
        entries = {id(k) for _, k in outcome.known}
        temporary = sum(1 for _, k in outcome.known if k.temporary)
        line = (
            f"schemathesis {args.backend} {outcome.document}: {outcome.cases} cases, "
            f"{len(outcome.unknown) + len(outcome.errors)} failures, "
            f"{len(outcome.known)} known disagreements ({len(entries)} entries"
        )
        line += f", {temporary} temporary)" if temporary else ")"
        print(f"{line} in {outcome.seconds:.0f}s ({outcome.cpu_seconds:.0f}s of CPU)")
    unseen = [k for k in known if not k.seen]
    if unseen:
        # Not an error: fuzzing may miss a rare case. An entry that is never seen any more is a
        # candidate for removal.
        lines = ", ".join(str(k.line) for k in unseen)
        print(f"schemathesis {args.backend}: known disagreements not seen in this run: lines {lines} of {args.known.name}")
    return 0 if all(o.ok for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
