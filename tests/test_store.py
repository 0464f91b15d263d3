"""The store: schema versions (and the version 1 -> 2 upgrade), validation, JSON round trip, crash durability,
concurrent writers, evals (atomic answers, uniqueness, query order), and the report's summary arithmetic and CSV
export. API tests run on SQLite and on a throwaway PostgreSQL server where its binaries and psycopg exist."""

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

from workbench.data.loaders import BadInputError
from workbench.report.exports import RATING_CSV_COLUMNS, export_ratings_csv
from workbench.report.summary import variant_summary
from workbench.store import ANSWER_FIELDS, MIGRATIONS, Store, StoreUnusable
from workbench.store import schema as schema_module
from workbench.store.schema import _SCHEMA_1, Migration

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


def test_a_new_store_and_its_wal_and_shm_are_readable_by_their_owner_only(tmp_path):
    path = tmp_path / "home" / "workbench.db"
    with Store.open(path) as opened:
        opened.ensure_run("demo")
        opened.start_conversation("demo", "ann", ["base"], ["base"])
        modes = {suffix: os.stat(f"{path}{suffix}").st_mode & 0o777 for suffix in ("", "-wal", "-shm")}
    assert modes == {"": 0o600, "-wal": 0o600, "-shm": 0o600}


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
    assert variant_summary(store, "r") == {
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
    assert variant_summary(store, "nope") == {}


def test_export_ratings_csv_writes_every_rating_of_the_run(store, tmp_path):
    summary_fixture(store)
    out = tmp_path / "out" / "ratings.csv"
    assert export_ratings_csv(store, out, run="r") == 9
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
        "queue_question_id": "",
        "rater": "ann",
        "answer_id": "t1-ft",
        "variant": "ft",
        "stars": "4",
        "vote": "best",
        "hallucinated": "False",
        "comment": "",
        "created_at": "",
        "question": "What is WAL?",
        "answer": "Write-ahead logging — «journal» first.",
    }
    assert [row["comment"] for row in rows if row["vote"] == "all_bad"] == ["all wrong"]
    assert os.listdir(out.parent) == ["ratings.csv"]
    assert export_ratings_csv(store, out) == 10


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
            opened.add_rating(turn_id, f"rater{worker}", f"{turn_id}-base", stars=1 + i % 5, vote="best")
        return positions

    with ThreadPoolExecutor(6) as pool:
        done = [pool.submit(write, first if w % 2 else second, w) for w in range(6)]
    positions = [p for future in done for p in future.result()]
    assert sorted(positions) == list(range(60))
    assert len(first.answers("r")) == 60 and len(second.ratings("r")) == 60
    assert variant_summary(first, "r")["base"]["mean_stars"] == 3.0
    first.close()
    second.close()


def test_opening_a_version_0_store_creates_the_schema(tmp_path):
    path = tmp_path / "workbench.db"
    raw = sqlite3.connect(path)
    raw.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)")
    raw.commit()
    raw.close()
    with Store.open(path) as opened:
        assert opened.schema_version() == len(MIGRATIONS)
        tables = {row["name"] for row in opened._rows("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == {"schema_migrations", "runs", "conversations", "turns", "answers", "judgements", "claim_flags"} | {
        "ratings",
        "evals",
        "queue_questions",
    }


def test_an_older_store_is_upgraded_one_transaction_per_migration(target, monkeypatch):
    with Store.open(target) as opened:
        opened.ensure_run("kept", config={"x": 1})
    add_note = Migration.same("ALTER TABLE runs ADD COLUMN note TEXT", "UPDATE runs SET note = 'migrated'")
    broken = Migration.same("ALTER TABLE runs ADD COLUMN other TEXT", "THIS IS NOT SQL")
    monkeypatch.setattr(schema_module, "MIGRATIONS", [*MIGRATIONS, add_note, broken])
    now = len(MIGRATIONS)
    with pytest.raises(
        StoreUnusable, match=f"(?s)upgrading the store to schema version {now + 2} failed.*left at version {now + 1}"
    ):
        Store.open(target)
    monkeypatch.setattr(schema_module, "MIGRATIONS", [*MIGRATIONS, add_note])
    with Store.open(target) as opened:
        assert opened.schema_version() == now + 1
        row = opened.ensure_run("kept")
    assert (row["config"], row["note"]) == ({"x": 1}, "migrated")
    assert "other" not in row


def test_a_store_newer_than_the_code_is_refused(target):
    with Store.open(target) as opened:
        opened._execute("INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)", (7, "later"))
    with pytest.raises(
        StoreUnusable, match=f"schema version 7 but this workbench knows versions up to {len(MIGRATIONS)}"
    ):
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


# -- schema version 2: evals ---------------------------------------------------------------------------------------


def raw_rows(store: Store, table: str) -> list[dict]:
    return store._rows(f"SELECT * FROM {table} ORDER BY {'id' if table != 'runs' else 'name'}")


def refused(store: Store, statement: str, params: tuple = ()) -> str:
    """The database's error message for a statement it must refuse (outside any transaction)."""
    with pytest.raises(Exception) as caught:
        store._execute(statement, params)
    assert not isinstance(caught.value, BadInputError)
    return str(caught.value)


def test_a_version_1_store_is_upgraded_keeping_every_row_and_foreign_key(target, monkeypatch):
    monkeypatch.setattr(schema_module, "MIGRATIONS", [Migration.same(*_SCHEMA_1)])
    with Store.open(target) as old:
        assert old.schema_version() == 1
        summary_fixture(old)  # runs, conversations, turns, answers, ratings, judgements, claims
        tables = ("runs", "conversations", "turns", "answers", "judgements", "claim_flags", "ratings")
        before = {table: raw_rows(old, table) for table in tables}
        assert all(before.values())
    monkeypatch.undo()
    with Store.open(target) as store:
        assert store.schema_version() == len(MIGRATIONS)
        after = {table: raw_rows(store, table) for table in tables}
        new_columns = {"eval_id": None, "qa_id": None, "gold_rank": None}
        assert after == {
            **before,
            "answers": [{**row, **new_columns} for row in before["answers"]],
            "turns": [{**row, "queue_question_id": None} for row in before["turns"]],
        }
        answer_ids = [a["id"] for a in store.answers("r")]
        assert answer_ids == [f"{t}-{v}" for t in ("t1", "t2") for v in ("base", "ft", "rag")]
        assert [j["id"] for j in store.judgements()] == [j["id"] for j in before["judgements"]]
        assert len(store.claim_flags()) == len(before["claim_flags"]) and len(store.ratings()) == 10
        assert variant_summary(store, "r")["ft"]["judges"]["h"] == {"mean": 1.0, "scored": 1, "failed": 0}

        # Judgements, claim flags and ratings still reference the (rebuilt) answers table, and it is enforced.
        dangling = (
            "INSERT INTO judgements (answer_id, judge, score, details, created_at) VALUES ('nope', 'g', 1, '{}', 'x')"
        )
        assert "foreign key" in refused(store, dangling).lower()
        assert "foreign key" in refused(store, "DELETE FROM answers WHERE id = 't1-base'").lower()
        assert (
            "foreign key" in refused(store, "UPDATE ratings SET answer_id = 'nope' WHERE answer_id = 't1-ft'").lower()
        )
        with pytest.raises(BadInputError, match="judgements.answer_id: no answer 'nope'"):
            store.add_judgement("nope", "g", 1.0)
        if target.endswith(".db"):
            assert store._one("PRAGMA foreign_keys") == {"foreign_keys": 1}
            assert store._rows("PRAGMA foreign_key_check") == []
            assert store._one("PRAGMA integrity_check") == {"integrity_check": "ok"}
            for table in ("judgements", "claim_flags", "ratings"):
                referenced = {row["table"] for row in store._rows(f"PRAGMA foreign_key_list({table})")}
                assert "answers" in referenced and not referenced & {"answers_new", "answers_old"}
            names = {row["name"] for row in store._rows("SELECT name FROM sqlite_master WHERE type = 'table'")}
            assert "answers_new" not in names

        # Exactly one of turn_id / eval_id, and eval answers name their QA pair.
        columns = "id, variant, question, text, prompt, decoding, chunk_ids, chunk_scores, created_at"
        values = "'x', 'base', 'q', 'a', '[]', '{}', '[]', '[]', 'now'"
        assert "check" in refused(store, f"INSERT INTO answers ({columns}) VALUES ({values})").lower()
        insert = f"INSERT INTO answers ({columns}, turn_id, eval_id) VALUES ({values}, 't1', 'e1')"
        store.start_eval(**eval_setup())
        assert "check" in refused(store, insert).lower()
        insert = f"INSERT INTO answers ({columns}, eval_id) VALUES ({values}, 'e1')"
        assert "check" in refused(store, insert).lower()

        # Eval answers go in beside the old rows.
        store.add_eval_answer("e1", "q1", eval_answer("q1", "base"), gold_rank=1, judgements=[judgement("g", 0.5)])
        assert [a["id"] for a in store.answers("r")] == [*answer_ids, "e1-q1-base"]
        assert store.judgements(eval_id="e1")[0]["score"] == 0.5


def test_a_migration_that_breaks_a_foreign_key_is_rolled_back(tmp_path, monkeypatch):
    path = tmp_path / "workbench.db"
    with Store.open(path) as store:
        store.ensure_run("r")
    dangling = Migration(
        sqlite=(
            "INSERT INTO judgements (answer_id, judge, score, details, created_at) VALUES ('nope', 'g', 1, '{}', 'x')",
        ),
        postgresql=(),
    )
    monkeypatch.setattr(schema_module, "MIGRATIONS", [*MIGRATIONS, dangling])
    now = len(MIGRATIONS)
    with pytest.raises(
        StoreUnusable, match=f"(?s)version {now + 1} failed \\(it breaks 1 foreign keys.*left at version {now}"
    ):
        Store.open(path)
    monkeypatch.undo()
    with Store.open(path) as store:
        assert store.schema_version() == now and store.judgements() == []
        assert store._one("PRAGMA foreign_keys") == {"foreign_keys": 1}


def eval_setup(**changes) -> dict:
    """The arguments of `start_eval` for eval `e1` of run `r` (created if missing is the caller's job)."""
    setup = {
        "eval_id": "e1",
        "run": "r",
        "split": "test",
        "variants": ["base", "rag"],
        "judges": ["g", "h"],
        "config_hash": "cfg@1",
        "config": {"eval": {"k": 4}, "note": "ünïcode"},
        "model_id": "smollm2-135m@abc123",
        "adapter_ids": {"base": None, "rag": None},
        "index_id": "idx@789",
        "questions": 3,
    }
    return {**setup, **changes}


def eval_answer(qa_id: str, variant: str, eval_id: str = "e1", **changes) -> dict:
    """An `Answer.to_dict()` of an eval: its turn_id is whatever the engine set, which the store ignores."""
    return {**answer(f"{eval_id}-{qa_id}", variant), "turn_id": "engine-turn", **changes}


def judgement(judge: str, score: float | None, reason: str | None = None) -> dict:
    """`Judgement.to_dict()`."""
    return {"judge": judge, "score": score, "reason": reason, "details": {"raw": f"[[{score}]]"}}


@pytest.fixture
def evals_store(store):
    store.ensure_run("r")
    store.start_eval(**eval_setup())
    return store


def test_start_eval_returns_its_row_and_an_existing_eval_unchanged(store):
    store.ensure_run("r")
    row = store.start_eval(**eval_setup())
    expected = {("id" if key == "eval_id" else key): value for key, value in eval_setup().items()}
    assert {key: row[key] for key in expected} == expected
    assert (row["finished_at"], row["counts"]) == (None, {}) and row["started_at"]
    assert store.start_eval(**eval_setup(config_hash="cfg@2", questions=9, variants=["ft"], adapter_ids={})) == row
    assert store.eval("e1") == row and store.eval("nope") is None
    assert store.evals() == [{**row, "stored": 0}] and store.evals("other") == []
    store.finish_eval("e1", {"answers": 6, "errors": 0})
    finished = store.eval("e1")
    assert finished == {**row, "finished_at": finished["finished_at"], "counts": {"answers": 6, "errors": 0}}
    assert finished["finished_at"] >= row["started_at"]


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"run": "missing"}, "evals.run: no run 'missing'"),
        ({"eval_id": " "}, "evals.id"),
        ({"split": ""}, "evals.split"),
        ({"variants": []}, "evals.variants"),
        ({"variants": ["base", "base"]}, "evals.variants"),
        ({"judges": ["g", "g"]}, "evals.judges: .* names a judge twice"),
        ({"judges": "g"}, "evals.judges"),
        ({"config_hash": None}, "evals.config_hash"),
        ({"config": "k=4"}, "evals.config: expected a dict"),
        ({"adapter_ids": {"ft": "ft@1"}}, r"evals.adapter_ids: \['ft'\] are not among the variants"),
        ({"adapter_ids": {"base": 3}}, "evals.adapter_ids"),
        ({"questions": -1}, "evals.questions"),
        ({"questions": True}, "evals.questions"),
    ],
)
def test_bad_evals_name_the_field_and_store_nothing(store, changes, message):
    store.ensure_run("r")
    with pytest.raises(BadInputError, match=message):
        store.start_eval(**eval_setup(**changes))
    assert store.evals() == []


def test_an_eval_answer_is_stored_with_its_judgements_and_claims(evals_store):
    store = evals_store
    claims = [
        {"claim": "WAL logs first.", "score": 0.25, "supported": True, "evidence": [{"chunk_id": "doc1#0"}]},
        {"claim": "It is slow.", "score": 0.75, "supported": False},
    ]
    record = eval_answer("q1", "rag")
    judged = [judgement("g", 0.5), judgement("h", None, reason="no [[score]]")]
    store.add_eval_answer("e1", "q1", record, gold_rank=2, judgements=judged, claims=("nli", claims))
    store.add_eval_answer("e1", "q1", eval_answer("q1", "base"))
    [stored, _] = store.answers(eval_id="e1")[::-1]
    assert {key: stored[key] for key in ANSWER_FIELDS} == {**record, "turn_id": None}
    assert (stored["eval_id"], stored["qa_id"], stored["gold_rank"], stored["run"]) == ("e1", "q1", 2, "r")
    assert (stored["conversation_id"], stored["position"]) == (None, None)
    rows = store.judgements(eval_id="e1")
    assert [(j["answer_id"], j["judge"], j["score"], j["reason"], j["details"]) for j in rows] == [
        ("e1-q1-rag", "g", 0.5, None, {"raw": "[[0.5]]"}),
        ("e1-q1-rag", "h", None, "no [[score]]", {"raw": "[[None]]"}),
    ]
    assert {(j["variant"], j["run"], j["eval_id"], j["qa_id"]) for j in rows} == {("rag", "r", "e1", "q1")}
    flags = store.claim_flags(eval_id="e1")
    assert [(f["position"], f["claim"], f["supported"], f["evidence"], f["qa_id"], f["run"]) for f in flags] == [
        (0, "WAL logs first.", True, [{"chunk_id": "doc1#0"}], "q1", "r"),
        (1, "It is slow.", False, [], "q1", "r"),
    ]
    assert store.eval_keys("e1") == {("q1", "rag"), ("q1", "base")} and store.eval_keys("nope") == set()
    assert store.evals("r")[0]["stored"] == 2
    # An eval answer can be judged again like any answer, but not rated: ratings are of arena turns.
    store.add_judgement("e1-q1-base", "g", 1.0)
    assert len(store.judgements(eval_id="e1")) == 3 and store.ratings() == []


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda s: s.add_eval_answer("e9", "q1", eval_answer("q1", "base")), "answers.eval_id: no eval 'e9'"),
        (lambda s: s.add_eval_answer("e1", "q1", eval_answer("q1", "ft")), "answers.variant: 'ft' is not one of"),
        (lambda s: s.add_eval_answer("e1", "", eval_answer("q1", "base")), "answers.qa_id"),
        (
            lambda s: s.add_eval_answer("e1", "q1", eval_answer("q1", "base", id="other")),
            "answers.qa_id: eval 'e1' already has an answer to 'q1' from 'base'",
        ),
        (lambda s: s.add_eval_answer("e1", "q2", eval_answer("q1", "base")), "answers.id: answer 'e1-q1-base'"),
        (lambda s: s.add_eval_answer("e1", "q2", eval_answer("q2", "rag"), gold_rank=-1), "answers.gold_rank"),
        (lambda s: s.add_eval_answer("e1", "q2", eval_answer("q2", "rag"), gold_rank=True), "answers.gold_rank"),
        (lambda s: s.add_eval_answer("e1", "q2", {"id": "x"}), r"answers: missing keys \['decoding'"),
        (
            lambda s: s.add_eval_answer("e1", "q2", eval_answer("q2", "rag"), judgements=[judgement("g", 1.0), {}]),
            r"judgements\[1\]: got \[\]",
        ),
        (
            lambda s: s.add_eval_answer(
                "e1", "q2", eval_answer("q2", "rag"), judgements=[judgement("g", 1.0), judgement("g", float("nan"))]
            ),
            r"judgements\[1\].score: nan is not a number",
        ),
        (
            lambda s: s.add_eval_answer(
                "e1", "q2", eval_answer("q2", "rag"), judgements=[judgement("g", 1.0), judgement("h", None)]
            ),
            r"judgements\[1\].reason: a judgement without a score",
        ),
        (
            lambda s: s.add_eval_answer(
                "e1", "q2", eval_answer("q2", "rag"), judgements=[judgement("g", 1.0), judgement("g", 0.5)]
            ),
            r"judgements\[1\].judge: 'g' judges this answer twice",
        ),
        (
            lambda s: s.add_eval_answer(
                "e1",
                "q2",
                eval_answer("q2", "rag"),
                judgements=[judgement("g", 1.0)],
                claims=("nli", [{"claim": "a", "score": 0.5, "supported": True}, {"claim": "b", "score": 2}]),
            ),
            r"claims\[1\]: got \['claim', 'score'\]",
        ),
        (
            lambda s: s.add_eval_answer("e1", "q2", eval_answer("q2", "rag"), claims=[{"claim": "a"}]),
            "claims: .* give None or \\(detector, \\[claim, ...\\]\\)",
        ),
        (lambda s: s.add_eval_answer("e1", "q2", eval_answer("q2", "rag"), claims=("", [])), "claim_flags.detector"),
        (lambda s: s.add_rating("t1", "ann", "e1-q1-base", stars=3), "answer 'e1-q1-base' is an eval's"),
        (lambda s: s.finish_eval("e9", {}), "evals.id: no eval 'e9'"),
        (lambda s: s.finish_eval("e1", ["answers"]), "evals.counts"),
    ],
)
def test_bad_eval_answers_name_the_field_and_store_nothing(evals_store, call, message):
    store = evals_store
    conversation(store, "r", ["t1"], variants=("base",))
    store.add_eval_answer("e1", "q1", eval_answer("q1", "base"), judgements=[judgement("g", 1.0)])
    state = (store.answers(), store.judgements(), store.claim_flags(), store.ratings(), store.evals())
    with pytest.raises(BadInputError, match=message):
        call(store)
    assert (store.answers(), store.judgements(), store.claim_flags(), store.ratings(), store.evals()) == state


def test_an_eval_answer_is_stored_whole_or_not_at_all(evals_store, monkeypatch):
    """A failure after the answer and its judgements are written, while writing its claims, leaves none of them."""
    store = evals_store
    insert_many = store._insert_many

    def failing(table, rows):
        if table == "claim_flags":
            raise RuntimeError("disk full")
        insert_many(table, rows)

    monkeypatch.setattr(store, "_insert_many", failing)
    claims = ("nli", [{"claim": "a", "score": 0.5, "supported": True}])
    with pytest.raises(RuntimeError, match="disk full"):
        store.add_eval_answer("e1", "q1", eval_answer("q1", "rag"), judgements=[judgement("g", 1.0)], claims=claims)
    assert (store.answers(), store.judgements(), store.claim_flags(), store.eval_keys("e1")) == ([], [], [], set())
    monkeypatch.undo()
    store.add_eval_answer("e1", "q1", eval_answer("q1", "rag"), judgements=[judgement("g", 1.0)], claims=claims)
    assert (len(store.answers()), len(store.judgements()), len(store.claim_flags())) == (1, 1, 1)


def test_queries_give_arena_rows_then_eval_rows_by_eval_qa_pair_and_variant(store):
    conversation(store, "r", ["t1", "t2"], variants=("base", "rag"))
    conversation(store, "other", ["o1"], variants=("base",))
    store.start_eval(**eval_setup())
    store.start_eval(**eval_setup(eval_id="e0"))  # started later, so listed after e1 despite its id
    store.start_eval(**eval_setup(eval_id="x1", run="other"))
    for eval_id, qa_id, variant in [("e0", "q1", "base"), ("e1", "q2", "rag"), ("e1", "q1", "rag")] + [
        ("e1", "q2", "base"),
        ("e1", "q1", "base"),
        ("x1", "q1", "base"),
    ]:
        claims = ("nli", [{"claim": "c", "score": 0.75, "supported": False}])
        store.add_eval_answer(
            eval_id, qa_id, eval_answer(qa_id, variant, eval_id), judgements=[judgement("g", 0.5)], claims=claims
        )
    # Arena judgements and claims stored out of variant order keep their own order (stored / by answer id).
    for answer_id in ("t2-rag", "t1-base", "t2-base"):
        store.add_judgement(answer_id, "g", 0.25)
        store.add_claims(answer_id, "nli", [{"claim": "c", "score": 0.25, "supported": True}] * 2)

    arena = ["t1-base", "t1-rag", "t2-base", "t2-rag"]
    evals = ["e1-q1-base", "e1-q1-rag", "e1-q2-base", "e1-q2-rag", "e0-q1-base"]
    assert [a["id"] for a in store.answers("r")] == arena + evals
    assert [a["id"] for a in store.answers()] == arena + ["o1-base"] + evals + ["x1-q1-base"]
    assert [a["id"] for a in store.answers(eval_id="e1")] == evals[:4]
    assert store.answers("other", eval_id="e1") == [] and store.answers(eval_id="nope") == []
    assert [j["answer_id"] for j in store.judgements("r")] == ["t2-rag", "t1-base", "t2-base"] + evals
    assert [j["answer_id"] for j in store.judgements(eval_id="e0")] == ["e0-q1-base"]
    assert [(f["answer_id"], f["position"]) for f in store.claim_flags("r")] == [
        (answer_id, position) for answer_id in ("t1-base", "t2-base", "t2-rag") for position in (0, 1)
    ] + [(answer_id, 0) for answer_id in evals]
    assert [f["answer_id"] for f in store.claim_flags("other")] == ["x1-q1-base"]
    assert [e["id"] for e in store.evals()] == ["e1", "e0", "x1"]
    assert [(e["id"], e["stored"]) for e in store.evals("r")] == [("e1", 4), ("e0", 1)]
    # The arena summary counts arena answers only, of turns voted on.
    assert variant_summary(store, "r") == {}
    for turn_id in ("t1", "t2"):
        store.add_rating(turn_id, "ann", vote="tie")
    summary = variant_summary(store, "r")
    assert {variant: row["answers"] for variant, row in summary.items()} == {"base": 2, "rag": 2}
    assert summary["base"]["judges"]["g"] == {"mean": 0.25, "scored": 2, "failed": 0}
    assert summary["base"]["auto_flagged"] == {}
