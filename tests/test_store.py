"""The store: schema versions, validation, JSON round trip, crash durability, concurrent writers, summary arithmetic
and CSV export. API tests run on SQLite and on a throwaway PostgreSQL server where its binaries and psycopg exist."""

import ast
import csv
import glob
import os
import pwd
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from workbench import store as store_module
from workbench.data.loaders import BadInputError
from workbench.store import ANSWER_FIELDS, MIGRATIONS, RATING_CSV_COLUMNS, Store, StoreUnusable

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def postgres_server():
    """A function emptying the database of a throwaway server (unix socket only, trust auth) and returning its URL;
    skips when psycopg or the server binaries are missing."""
    psycopg = pytest.importorskip("psycopg", reason="psycopg is not installed: pip install 'workbench[postgres]'")
    initdb = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb")) or [shutil.which("initdb")]
    if initdb[-1] is None:
        pytest.skip("PostgreSQL server binaries not found (Debian: apt-get install postgresql)")
    bindir = Path(initdb[-1]).parent
    root = Path(tempfile.mkdtemp(prefix="wb-pg-"))
    as_user = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root without a `postgres` user to run the server as")
        os.chown(root, owner.pw_uid, owner.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]

    def pg(*args):
        done = subprocess.run([*as_user, *args], check=False, capture_output=True, text=True, timeout=120)
        if done.returncode:
            pytest.fail(f"{Path(args[0]).name} failed: {done.stdout}{done.stderr}")

    data = root / "data"
    pg(bindir / "initdb", "-D", data, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync")
    options = f"-k {root} -c listen_addresses='' -c fsync=off -c synchronous_commit=off"
    pg(bindir / "pg_ctl", "-D", data, "-l", root / "server.log", "-o", options, "-w", "start")

    url = f"postgresql://postgres@/postgres?host={root}"

    def empty_database() -> str:
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute("DROP SCHEMA public CASCADE")
            admin.execute("CREATE SCHEMA public")
        return url

    yield empty_database
    pg(bindir / "pg_ctl", "-D", data, "-m", "immediate", "-w", "stop")
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def target(request, tmp_path):
    """Where a store lives: a new SQLite file, or an emptied PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "store" / "workbench.db")
    return request.getfixturevalue("postgres_server")()


@pytest.fixture
def store(target):
    with Store.open(target) as opened:
        yield opened


def answer(turn_id: str, variant: str, **changes) -> dict:
    """A complete answer record, as `Answer.to_dict()` gives it."""
    record = {
        "id": f"{turn_id}-{variant}",
        "turn_id": turn_id,
        "variant": variant,
        "question": "What is WAL?",
        "text": "Write-ahead logging — «journal» first.",
        "prompt": [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "What is WAL?"}],
        "ttft_s": 0.125,
        "total_s": 1.5,
        "tokens_in": 42,
        "tokens_out": 17,
        "finish_reason": "stop",
        "decoding": {"temperature": 0.7, "top_p": 0.9, "max_new_tokens": 256, "seed": 3},
        "model_id": "smollm2-135m@abc123",
        "precision": "bfloat16 weights, oneDNN packed",
        "adapter_id": "ft@def456" if "ft" in variant else None,
        "index_id": "idx@789" if "rag" in variant else None,
        "chunk_ids": ["doc1#0", "doc2#3"] if "rag" in variant else [],
        "chunk_scores": [0.8125, 0.5] if "rag" in variant else [],
        "error": None,
    }
    return {**record, **changes}


def conversation(store: Store, run: str, turns: list[str], variants=("base", "ft", "rag"), rater="ann") -> int:
    """A conversation of `run` with the given turn ids, each answered by every variant."""
    store.ensure_run(run)
    cid = store.start_conversation(run, rater, list(variants), list(reversed(variants)))
    for turn_id in turns:
        store.add_turn(cid, turn_id, "What is WAL?")
        for variant in variants:
            store.add_answer(answer(turn_id, variant))
    return cid


def test_answer_fields_match_the_engine_record():
    tree = ast.parse((REPO / "workbench" / "engine.py").read_text(encoding="utf-8"))
    record = next(node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == "Answer")
    fields = [node.target.id for node in record.body if isinstance(node, ast.AnnAssign)]
    assert tuple(fields) == ANSWER_FIELDS


def test_default_location_is_home_with_wal_and_foreign_keys(tmp_path):
    home = tmp_path / "home"
    with Store.open(home=home) as opened:
        assert opened.where == str(home.resolve() / "workbench.db")
        assert opened.schema_version() == len(MIGRATIONS)
        opened.ensure_run("demo")
    with Store.open(f"sqlite:///{home / 'workbench.db'}") as again:
        assert again.conversations() == [] and again.ensure_run("demo")["name"] == "demo"
    raw = sqlite3.connect(home / "workbench.db")
    assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    raw.close()
    with Store.open(home / "workbench.db") as opened:
        assert opened._conn.execute("PRAGMA foreign_keys").fetchone() == {"foreign_keys": 1}


def test_records_round_trip_with_json_decoded(store):
    config = {"lora": {"r": 8, "alpha": 16}, "note": "ünïcode ✓", "layers": [1, 2]}
    run = store.ensure_run("r1", config=config, model_id="m@1", adapter_id="a@1", index_id="i@1")
    assert {k: run[k] for k in ("name", "config", "model_id", "adapter_id", "index_id")} == {
        "name": "r1",
        "config": config,
        "model_id": "m@1",
        "adapter_id": "a@1",
        "index_id": "i@1",
    }
    cid = store.start_conversation("r1", "ann", ["base", "ft_rag"], ["ft_rag", "base"])
    assert store.add_turn(cid, "t0", "first?") == 0
    assert store.add_turn(cid, "t1", "second?") == 1
    records = [answer("t1", "ft_rag"), answer("t1", "base", ttft_s=None, finish_reason="error", error="boom")]
    for record in records:
        store.add_answer(record)
    store.add_judgement("t1-base", "g-eval", None, reason="no [[score]] in reply", details={"raw": "meh"})
    claims = [
        {
            "claim": "WAL logs first.",
            "score": 0.125,
            "supported": True,
            "evidence": [{"chunk_id": "doc1#0", "text": "x"}],
        },
        {"claim": "It is slow.", "score": 0.875, "supported": False},
    ]
    store.add_claims("t1-ft_rag", "nli", claims)

    [conv] = store.conversations("r1")
    assert (conv["variants"], conv["blind_order"], conv["rater"]) == (["base", "ft_rag"], ["ft_rag", "base"], "ann")
    stored = store.answers("r1")
    assert [row["id"] for row in stored] == ["t1-base", "t1-ft_rag"]
    for row, record in zip(stored, reversed(records)):
        assert {key: row[key] for key in ANSWER_FIELDS} == record
        assert (row["run"], row["conversation_id"], row["position"]) == ("r1", cid, 1)
    [judgement] = store.judgements("r1")
    assert (judgement["score"], judgement["reason"], judgement["details"]) == (
        None,
        "no [[score]] in reply",
        {"raw": "meh"},
    )
    flags = store.claim_flags("r1")
    assert [(f["position"], f["claim"], f["score"], f["supported"], f["evidence"]) for f in flags] == [
        (0, "WAL logs first.", 0.125, True, [{"chunk_id": "doc1#0", "text": "x"}]),
        (1, "It is slow.", 0.875, False, []),
    ]
    assert store.answers("nope") == [] and len(store.answers()) == 2


def test_ensure_run_keeps_created_at_and_updates_only_given_fields(store):
    first = store.ensure_run("r1", config={"a": 1}, model_id="m@1", adapter_id="a@1")
    second = store.ensure_run("r1", adapter_id="a@2")
    assert second == {**first, "adapter_id": "a@2"}
    with pytest.raises(ValueError, match="invalid run name"):
        store.ensure_run("../escape")


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda s: s.start_conversation("missing", "ann", ["base"], ["base"]), "conversations.run: no run 'missing'"),
        (lambda s: s.start_conversation("r", "ann", ["base", "base"], ["base", "base"]), "conversations.variants"),
        (lambda s: s.start_conversation("r", "ann", ["base", "ft"], ["base", "rag"]), "conversations.blind_order"),
        (lambda s: s.start_conversation("r", " ", ["base"], ["base"]), "conversations.rater"),
        (lambda s: s.add_turn(999, "t9", "q"), "turns.conversation_id: no conversation 999"),
        (lambda s: s.add_turn(1, "t1", "q"), "turns.id: turn 't1' is already stored"),
        (lambda s: s.add_answer(answer("t9", "base")), "answers.turn_id: no turn 't9'"),
        (lambda s: s.add_answer(answer("t1", "other")), "answers.variant: 'other' is not one of"),
        (lambda s: s.add_answer(answer("t1", "base")), "answers.id: answer 't1-base' is already stored"),
        (lambda s: s.add_answer(answer("t1", "base", id="new")), "turn 't1' already has an answer from 'base'"),
        (lambda s: s.add_answer({**answer("t1", "ft"), "extra": 1}), r"unknown keys \['extra'\]"),
        (lambda s: s.add_answer({"id": "x", "turn_id": "t1"}), r"missing keys \['decoding'"),
        (lambda s: s.add_judgement("t1-base", "g", float("nan")), "judgements.score: nan is not a number"),
        (lambda s: s.add_judgement("t1-base", "g", None), "judgements.reason: a judgement without a score"),
        (lambda s: s.add_judgement("nope", "g", 1.0), "judgements.answer_id: no answer 'nope'"),
        (
            lambda s: s.add_claims("t1-base", "nli", [{"claim": "c", "score": 1.5, "supported": False}]),
            r"claims\[0\].score",
        ),
        (lambda s: s.add_claims("t1-base", "nli", [{"claim": "c", "score": 0.5, "supported": 1}]), "supported"),
        (lambda s: s.add_claims("t1-base", "nli", [{"text": "c"}]), r"claims\[0\]: got \['text'\]"),
        (lambda s: s.add_rating("t1", "ann", "t1-base", stars=6), "ratings.stars: 6 is not a star rating"),
        (lambda s: s.add_rating("t1", "ann", "t1-base", stars=True), "ratings.stars: True"),
        (lambda s: s.add_rating("t1", "ann", "t1-base", vote="good"), "ratings.vote: 'good' is not a vote"),
        (lambda s: s.add_rating("t1", "ann", vote="best"), "a 'best' vote names the winning answer"),
        (lambda s: s.add_rating("t1", "ann", "t1-base", vote="tie"), "'tie' is about the whole turn"),
        (lambda s: s.add_rating("t1", "ann", stars=3), "stars and the hallucination flag rate one answer"),
        (lambda s: s.add_rating("t1", "ann", "t1-base", hallucinated="yes"), "ratings.hallucinated"),
        (lambda s: s.add_rating("t1", "ann", "t1-base"), "ratings: nothing to store"),
        (lambda s: s.add_rating("t2", "ann", "t1-base", stars=3), "answer 't1-base' belongs to turn 't1', not 't2'"),
        (lambda s: s.add_rating("t9", "ann", vote="tie"), "ratings.turn_id: no turn 't9'"),
    ],
)
def test_bad_writes_name_the_field_and_store_nothing(store, call, message):
    conversation(store, "r", ["t1", "t2"], variants=("base", "ft"))
    before = (store.answers(), store.ratings(), store.judgements(), store.claim_flags(), store.conversations())
    with pytest.raises(BadInputError, match=message):
        call(store)
    assert (store.answers(), store.ratings(), store.judgements(), store.claim_flags(), store.conversations()) == before


def test_judging_or_checking_again_replaces_the_earlier_output(store):
    conversation(store, "r", ["t1"], variants=("base",))
    store.add_judgement("t1-base", "g", None, reason="unparseable")
    store.add_judgement("t1-base", "g", 0.5, details={"raw": "[[5]]"})
    assert [(j["score"], j["reason"], j["details"]) for j in store.judgements()] == [(0.5, None, {"raw": "[[5]]"})]
    store.add_claims("t1-base", "nli", [{"claim": "a", "score": 0.9, "supported": False}] * 3)
    store.add_claims("t1-base", "nli", [{"claim": "b", "score": 0.1, "supported": True}])
    assert [(f["claim"], f["position"]) for f in store.claim_flags()] == [("b", 0)]


def test_a_rating_replaces_the_raters_earlier_one_and_a_rater_has_one_vote_per_turn(store):
    conversation(store, "r", ["t1"], variants=("base", "ft"))
    first = store.add_rating("t1", "ann", "t1-base", stars=2, hallucinated=True)
    assert store.add_rating("t1", "ann", "t1-base", stars=4, comment="on reflection") == first
    store.add_rating("t1", "bob", "t1-base", stars=1)
    store.add_rating("t1", "ann", "t1-ft", vote="best")
    store.add_rating("t1", "ann", "t1-base", stars=4, vote="best")  # ann changes her vote: t1-ft's vote-only row goes
    rows = [
        (r["rater"], r["answer_id"], r["stars"], r["vote"], r["hallucinated"], r["comment"]) for r in store.ratings()
    ]
    assert rows == [("ann", "t1-base", 4, "best", None, None), ("bob", "t1-base", 1, None, None, None)]
    store.add_rating("t1", "ann", vote="tie", comment="both fine")
    rows = [(r["rater"], r["answer_id"], r["stars"], r["vote"], r["comment"]) for r in store.ratings()]
    assert rows == [
        ("ann", "t1-base", 4, None, None),
        ("bob", "t1-base", 1, None, None),
        ("ann", None, None, "tie", "both fine"),
    ]


def summary_fixture(store: Store) -> None:
    """Two turns of run `r` by three variants, rated by ann and bob, judged and checked; plus a run `other`."""
    conversation(store, "r", ["t1", "t2"])
    conversation(store, "other", ["o1"], variants=("base",))
    for turn, rater, answer_id, rating in [
        ("t1", "ann", "t1-base", {"stars": 2, "hallucinated": True}),
        ("t1", "ann", "t1-ft", {"stars": 4, "hallucinated": False, "vote": "best"}),
        ("t1", "ann", "t1-rag", {"stars": 5}),
        ("t1", "bob", "t1-ft", {"stars": 3, "hallucinated": True}),
        ("t1", "bob", None, {"vote": "tie"}),
        ("t2", "ann", None, {"vote": "all_bad", "comment": "all wrong"}),
        ("t2", "ann", "t2-base", {"stars": 1, "hallucinated": True}),
        ("t2", "ann", "t2-ft", {"stars": 5, "hallucinated": False}),
        ("t2", "bob", "t2-rag", {"vote": "best"}),
        ("o1", "ann", "o1-base", {"stars": 5, "hallucinated": False, "vote": "best"}),
    ]:
        store.add_rating(turn, rater, answer_id, **rating)
    for answer_id, judge, score in [
        ("t1-base", "g", 0.25),
        ("t2-base", "g", None),
        ("t1-ft", "g", 0.75),
        ("t2-ft", "g", 0.25),
        ("t1-ft", "h", 1.0),
        ("o1-base", "g", 1.0),
    ]:
        store.add_judgement(answer_id, judge, score, reason=None if score is not None else "no score")
    supported = {"claim": "fine", "score": 0.25, "supported": True}
    unsupported = {"claim": "made up", "score": 0.75, "supported": False}
    store.add_claims("t1-base", "nli", [supported, unsupported])
    store.add_claims("t1-base", "overlap", [unsupported])
    store.add_claims("t1-rag", "nli", [supported])
    store.add_claims("t2-rag", "nli", [unsupported])
    store.add_claims("o1-base", "nli", [unsupported])


def test_variant_summary_arithmetic(store):
    summary_fixture(store)
    common = {"answers": 2, "ties": 1, "all_bad": 1}
    assert store.variant_summary("r") == {
        "base": {
            **common,
            "ratings": 2,
            "mean_stars": 1.5,
            "wins": 0,
            "human_flagged": 2,
            "human_flag_rate": 1.0,
            "auto_flagged": {"nli": 1, "overlap": 1},
            "judges": {"g": {"mean": 0.25, "scored": 1, "failed": 1}},
        },
        "ft": {
            **common,
            "ratings": 3,
            "mean_stars": 4.0,
            "wins": 1,
            "human_flagged": 1,
            "human_flag_rate": 0.5,
            "auto_flagged": {},
            "judges": {"g": {"mean": 0.5, "scored": 2, "failed": 0}, "h": {"mean": 1.0, "scored": 1, "failed": 0}},
        },
        "rag": {
            **common,
            "ratings": 2,
            "mean_stars": 5.0,
            "wins": 1,
            "human_flagged": 0,
            "human_flag_rate": None,
            "auto_flagged": {"nli": 1},
            "judges": {},
        },
    }
    assert store.variant_summary("nope") == {}


def test_export_ratings_csv_writes_every_rating_of_the_run(store, tmp_path):
    summary_fixture(store)
    out = tmp_path / "out" / "ratings.csv"
    assert store.export_ratings_csv(out, run="r") == 9
    with open(out, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
    assert tuple(reader.fieldnames) == RATING_CSV_COLUMNS
    assert {row["run"] for row in rows} == {"r"}
    assert rows[1] | {"id": "", "conversation_id": "", "created_at": ""} == {
        "id": "",
        "run": "r",
        "conversation_id": "",
        "turn_id": "t1",
        "position": "0",
        "rater": "ann",
        "answer_id": "t1-ft",
        "variant": "ft",
        "stars": "4",
        "vote": "best",
        "hallucinated": "False",
        "comment": "",
        "created_at": "",
    }
    assert [row["comment"] for row in rows if row["vote"] == "all_bad"] == ["all wrong"]
    assert os.listdir(out.parent) == ["ratings.csv"]
    assert store.export_ratings_csv(out) == 10


def test_concurrent_writers_from_threads_and_two_connections(target):
    first, second = Store.open(target), Store.open(target)
    first.ensure_run("r")
    cid = first.start_conversation("r", "ann", ["base"], ["base"])

    def write(opened: Store, worker: int) -> list[int]:
        positions = []
        for i in range(10):
            turn_id = f"w{worker}-{i}"
            positions.append(opened.add_turn(cid, turn_id, "q"))
            opened.add_answer(answer(turn_id, "base"))
            opened.add_rating(turn_id, f"rater{worker}", f"{turn_id}-base", stars=1 + i % 5)
        return positions

    with ThreadPoolExecutor(6) as pool:
        done = [pool.submit(write, first if w % 2 else second, w) for w in range(6)]
    positions = [p for future in done for p in future.result()]
    assert sorted(positions) == list(range(60))
    assert len(first.answers("r")) == 60 and len(second.ratings("r")) == 60
    assert first.variant_summary("r")["base"]["mean_stars"] == 3.0
    first.close()
    second.close()


def test_opening_a_version_0_store_creates_the_schema(tmp_path):
    path = tmp_path / "workbench.db"
    raw = sqlite3.connect(path)
    raw.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)")
    raw.commit()
    raw.close()
    with Store.open(path) as opened:
        assert opened.schema_version() == 1
        tables = {row["name"] for row in opened._rows("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == {"schema_migrations", "runs", "conversations", "turns", "answers", "judgements", "claim_flags"} | {
        "ratings"
    }


def test_an_older_store_is_upgraded_one_transaction_per_migration(target, monkeypatch):
    with Store.open(target) as opened:
        opened.ensure_run("kept", config={"x": 1})
    add_note = ("ALTER TABLE runs ADD COLUMN note TEXT", "UPDATE runs SET note = 'migrated'")
    broken = ("ALTER TABLE runs ADD COLUMN other TEXT", "THIS IS NOT SQL")
    monkeypatch.setattr(store_module, "MIGRATIONS", [*MIGRATIONS, add_note, broken])
    with pytest.raises(StoreUnusable, match="(?s)upgrading the store to schema version 3 failed.*left at version 2"):
        Store.open(target)
    monkeypatch.setattr(store_module, "MIGRATIONS", [*MIGRATIONS, add_note])
    with Store.open(target) as opened:
        assert opened.schema_version() == 2
        row = opened.ensure_run("kept")
    assert (row["config"], row["note"]) == ({"x": 1}, "migrated")
    assert "other" not in row


def test_a_store_newer_than_the_code_is_refused(target):
    with Store.open(target) as opened:
        opened._execute("INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)", (7, "later"))
    with pytest.raises(StoreUnusable, match="schema version 7 but this workbench knows versions up to 1"):
        Store.open(target)


def test_unusable_targets_say_why(tmp_path):
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not a database at all" * 100)
    with pytest.raises(StoreUnusable, match="garbage.db: cannot use as a SQLite store"):
        Store.open(garbage)
    with pytest.raises(StoreUnusable, match="cannot use as a SQLite store"):
        Store.open(tmp_path)
    with pytest.raises(StoreUnusable, match="mysql://u:\\*\\*\\*@host/db: unknown store URL"):
        Store.open("mysql://u:secret@host/db")
    pytest.importorskip("psycopg")
    with pytest.raises(StoreUnusable, match="cannot connect") as caught:
        Store.open(f"postgresql://u:secret@/db?host={tmp_path}")
    assert "secret" not in str(caught.value)


CHILD = """
import sys
from workbench.store import Store

store = Store.open(sys.argv[1])
store.ensure_run("r")
cid = store.start_conversation("r", "ann", ["base"], ["base"])
evidence = [{"chunk_id": "doc#1", "text": "x" * 300, "score": 0.5}]
claims = [{"claim": f"claim {j}", "score": 0.5, "supported": j % 2 == 0, "evidence": evidence} for j in range(300)]
for i in range(100000):
    store.add_turn(cid, f"t{i}", "q")
    store.add_answer({"id": f"a{i}", "turn_id": f"t{i}", "variant": "base", "question": "q", "text": "a", "prompt": [],
        "ttft_s": 0.1, "total_s": 0.2, "tokens_in": 1, "tokens_out": 1, "finish_reason": "stop", "decoding": {},
        "model_id": "m"})
    store.add_claims(f"a{i}", "nli", claims)
    store.add_rating(f"t{i}", "ann", f"a{i}", stars=3)
    print(i, flush=True)
"""


def test_a_killed_writer_loses_no_committed_row_and_leaves_no_half_write(tmp_path):
    path = tmp_path / "workbench.db"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE, text=True, env=env)
    acknowledged = [child.stdout.readline() for _ in range(12)]
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=30)
    child.stdout.close()
    assert all(line.strip() for line in acknowledged), "the writer died before it was killed"
    with Store.open(path) as opened:
        assert opened._one("PRAGMA integrity_check") == {"integrity_check": "ok"}
        answers = {row["id"] for row in opened.answers()}
        claims = {}
        for flag in opened.claim_flags():
            claims[flag["answer_id"]] = claims.get(flag["answer_id"], 0) + 1
        rated = {row["answer_id"] for row in opened.ratings()}
    committed = {f"a{int(line)}" for line in acknowledged}
    assert committed <= answers and committed <= rated
    assert all(claims.get(a) == 300 for a in committed)
    assert set(claims.values()) == {300}


def test_workbench_db_environment_variable_chooses_the_store(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_DB", f"sqlite:///{tmp_path / 'team.db'}")
    with Store.open(home=tmp_path / "home") as store:
        store.ensure_run("demo")
    assert (tmp_path / "team.db").is_file() and not (tmp_path / "home" / "workbench.db").exists()
