"""Benchmark refresh, rewind, a typical dump-and-restore script, and the template-copy floor.

Run from the repository root:

    python3 bench/checkpoint_bench.py --size-mb 1024 [--record BENCHMARKS.md]

It starts its own PostgreSQL (``PostgresCluster``, as the lab does), generates a
prod-shaped Dolibarr database of about ``--size-mb`` MiB and a documents tree, and
measures on that same data, in this order:

- cold refresh: ``sandbox-lifecycle.sh refresh --yes`` run by ``run_lifecycle_script``, into an
  empty sandbox (empty database, empty documents folder);
- a delta added to prod, as a working day would add it: new validated invoices with their lines
  and PDF files, some invoices marked paid with their PDF written again, a few third parties
  edited, and two invoice folders deleted;
- steady-state refresh: the same command again, into the sandbox the cold refresh seeded;
- checkpoint.save, then rewind: the same runner with ``checkpoint-save`` and ``rewind --yes``;
- baseline: ``pg_dump -Fc`` of prod to a file, ``DROP OWNED BY`` the sandbox role, ``pg_restore``;
- floor: ``CREATE DATABASE ... TEMPLATE <sandbox> STRATEGY FILE_COPY``.

The targets are checked against the steady-state refresh, because re-seeding a seeded sandbox
is the common case. The cold refresh is printed too.

Generation and the delta run in a child process, so the peak memory printed (``ru_maxrss`` of this
process) is the tool's own: the Python runner that drives the lifecycle script. The
script's children (psql, pg_dump, pg_restore) are reported separately.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from checkpoint.lab.pgcluster import PostgresCluster  # noqa: E402
from checkpoint.lifecycle import run_lifecycle_script  # noqa: E402
from checkpoint.outcome import Run  # noqa: E402
from checkpoint.settings import LifecycleSettings  # noqa: E402

PROD, PROD_OWNER, PROD_READER = "dolibarr", "dolibarr", "dolibarr_prod_reader"
SANDBOX, SANDBOX_OWNER = "dolibarr_sandbox", "dolibarr_sandbox"
TARGETS = {
    "rewind / floor": 1.5,
    "rewind / refresh": 0.05,
    "refresh / baseline": 0.6,
}
# Share of prod's invoices that the delta adds, and of those it marks paid.
DELTA_NEW_INVOICES = 0.005
DELTA_PAID_INVOICES = 0.001
DELTA_EDITED_THIRD_PARTIES = 20
DELTA_DELETED_FOLDERS = 2
MEASURES = ("generate", "refresh (cold)", "delta", "refresh", "checkpoint.save", "rewind", "baseline", "floor")
MEMORY_TARGET_MB = 150


def main() -> int:
    arguments = _parse_arguments()
    root = Path(arguments.work_dir or "/tmp") / f"checkpoint-bench-{os.getpid()}"
    root.mkdir(parents=True)
    root.chmod(0o755)
    cluster = PostgresCluster(root / "postgres")
    try:
        cluster.init()
        cluster.start()
        results = _benchmark(cluster, root, arguments)
        report = _report(results, arguments)
        print(report, flush=True)
        if arguments.record:
            with open(arguments.record, "a") as handle:
                handle.write("\n" + report + "\n")
    finally:
        cluster.stop()
        # Removing a million hard links takes minutes on ext4, after the report is out.
        if not arguments.keep:
            shutil.rmtree(root, ignore_errors=True)
    return 0


def _parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024, help="size of the generated prod database in MiB")
    parser.add_argument("--seed", type=int, default=1, help="seed of the generator")
    parser.add_argument("--work-dir", help="parent folder of the cluster and the documents (default /tmp)")
    parser.add_argument("--record", help="append the results as Markdown to this file, e.g. BENCHMARKS.md")
    parser.add_argument("--keep", action="store_true", help="keep the cluster's folder after the run")
    parser.add_argument("--script", type=Path, default=REPO_ROOT / "ops" / "sandbox" / "sandbox-lifecycle.sh",
                        help="lifecycle script to measure, e.g. an older version's copy (default: this repository's)")
    parser.add_argument("--generate-into", nargs=3, metavar=("URI", "PASSFILE", "DOCUMENTS"), help=argparse.SUPPRESS)
    parser.add_argument("--delta-into", nargs=3, metavar=("URI", "PASSFILE", "DOCUMENTS"), help=argparse.SUPPRESS)
    return parser.parse_args()


def _benchmark(cluster: PostgresCluster, root: Path, arguments: argparse.Namespace) -> dict:
    prod_documents, sandbox_documents = root / "documents" / "prod", root / "documents" / "sandbox"
    _create_databases(cluster)
    generated = _timed(_generate, cluster, prod_documents, arguments)
    lifecycle = LifecycleSettings(
        script=arguments.script.resolve(),
        transport="local",
        prod_db_uri=cluster.uri(PROD, PROD_READER),
        sandbox_db_uri=cluster.uri(SANDBOX, SANDBOX_OWNER),
        prod_documents_dir=prod_documents,
        sandbox_documents_dir=sandbox_documents,
        pgpassfile=cluster.pgpass_file,
        work_dir=root,
    )
    sandbox_documents.mkdir(parents=True)

    results = {"generate": generated[0], "phases": {}}
    _run_lifecycle(lifecycle, "refresh (cold)", None, results)
    results["delta"] = _timed(_delta, cluster, prod_documents, arguments)[0]
    for name, arguments_ in (("refresh", None), ("checkpoint.save", ["checkpoint-save"]), ("rewind", ["rewind", "--yes"])):
        _run_lifecycle(lifecycle, name, arguments_, results)
    results["tool_peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    results["children_peak_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024

    results["baseline"], results["phases"]["baseline"] = _baseline(cluster, root)
    results["floor"] = _timed(_floor, cluster)[0]
    results["sizes"] = _sizes(cluster, sandbox_documents.parent / "sandbox.checkpoints")
    return results


def _run_lifecycle(lifecycle: LifecycleSettings, name: str, arguments: list[str] | None, results: dict) -> None:
    run = Run(name)
    results[name] = _timed(run_lifecycle_script, lifecycle, run, db_only=False, arguments=arguments)[0]
    results["phases"][name] = {outcome.step: round(outcome.duration, 2) for outcome in run.outcomes}
    for outcome in run.outcomes:
        if outcome.step == "documents":
            results.setdefault("documents", {})[name] = outcome.message


def _create_databases(cluster: PostgresCluster) -> None:
    cluster.create_role(PROD_OWNER)
    cluster.create_role(SANDBOX_OWNER, createdb=True)
    cluster.create_role(PROD_READER)
    cluster.create_database(PROD, PROD_OWNER)
    cluster.create_database(SANDBOX, SANDBOX_OWNER)
    cluster.psql(f"GRANT pg_read_all_data TO {PROD_READER}")


def _generate(cluster: PostgresCluster, documents: Path, arguments: argparse.Namespace) -> None:
    """Generate prod in a child process, whose memory does not count as the tool's."""
    subprocess.run(
        [sys.executable, __file__, "--size-mb", str(arguments.size_mb), "--seed", str(arguments.seed),
         "--generate-into", cluster.uri(PROD, PROD_OWNER), str(cluster.pgpass_file), str(documents)],
        check=True,
    )


def _generate_into(uri: str, passfile: str, documents: str, size_mb: int, seed: int) -> None:
    from checkpoint.lab.generator import generate_database, generate_documents, invoice_count_for

    generate_database(uri, target_mb=size_mb, seed=seed, admin_password=secrets.token_urlsafe(18),
                      passfile=Path(passfile))
    generate_documents(Path(documents), invoice_count=invoice_count_for(size_mb), seed=seed)


def _delta(cluster: PostgresCluster, documents: Path, arguments: argparse.Namespace) -> None:
    """Add a working day's changes to prod in a child process, whose memory does not count as the tool's."""
    subprocess.run(
        [sys.executable, __file__, "--size-mb", str(arguments.size_mb), "--seed", str(arguments.seed),
         "--delta-into", cluster.uri(PROD, PROD_OWNER), str(cluster.pgpass_file), str(documents)],
        check=True,
    )


# New invoices copy the newest validated ones with new rowids, refs and dates, and their lines
# are copied with them. DELTA_PAID_SQL returns the refs of the invoices it marks paid, whose
# PDF the delta writes again.
DELTA_SQL = """
CREATE TEMPORARY TABLE delta_map ON COMMIT DROP AS
  SELECT rowid AS source, (SELECT max(rowid) FROM llx_facture) + row_number() OVER (ORDER BY rowid) AS target
  FROM (SELECT rowid FROM llx_facture WHERE fk_statut > 0 ORDER BY rowid DESC LIMIT {new}) newest;
CREATE TEMPORARY TABLE delta_invoices ON COMMIT DROP AS
  SELECT f.* FROM llx_facture f JOIN delta_map m ON f.rowid = m.source;
UPDATE delta_invoices d SET rowid = m.target, ref = 'FA' || to_char(now(), 'YYMM') || '-D' || m.target,
  datec = now(), datef = current_date, date_valid = current_date, tms = now(), paye = 0, fk_statut = 1
  FROM delta_map m WHERE d.rowid = m.source;
INSERT INTO llx_facture SELECT * FROM delta_invoices;
CREATE TEMPORARY TABLE delta_lines ON COMMIT DROP AS
  SELECT l.* FROM llx_facturedet l JOIN delta_map m ON l.fk_facture = m.source;
UPDATE delta_lines l SET fk_facture = m.target FROM delta_map m WHERE l.fk_facture = m.source;
UPDATE delta_lines SET rowid = nextval(pg_get_serial_sequence('llx_facturedet', 'rowid'));
INSERT INTO llx_facturedet SELECT * FROM delta_lines;
SELECT setval(pg_get_serial_sequence('llx_facture', 'rowid'), (SELECT max(rowid) FROM llx_facture));
UPDATE llx_societe SET phone = '+33 1 00 00 00 ' || lpad((rowid % 100)::text, 2, '0'), tms = now()
  WHERE rowid IN (SELECT rowid FROM llx_societe ORDER BY rowid LIMIT {third_parties});
"""
DELTA_PAID_SQL = """
UPDATE llx_facture SET paye = 1, fk_statut = 2, tms = now()
WHERE rowid IN (SELECT rowid FROM llx_facture WHERE fk_statut = 1 AND paye = 0 AND ref NOT LIKE '%-D%'
                ORDER BY rowid LIMIT {paid})
RETURNING ref
"""


def _delta_into(uri: str, passfile: str, documents: str, size_mb: int) -> None:
    import psycopg

    from checkpoint.lab.generator import invoice_count_for
    from checkpoint.lab.generator.documents import invoice_pdf

    invoices = invoice_count_for(size_mb)
    counts = {"new": max(10, round(invoices * DELTA_NEW_INVOICES)), "paid": max(2, round(invoices * DELTA_PAID_INVOICES)),
              "third_parties": DELTA_EDITED_THIRD_PARTIES}
    with psycopg.connect(uri, passfile=passfile) as connection:
        # Several statements in one execute need the simple query protocol, so no parameters:
        # the counts are integers computed here.
        connection.execute(DELTA_SQL.format(**counts))
        new_refs = [row[0] for row in connection.execute("SELECT ref FROM llx_facture WHERE ref LIKE '%-D%'")]
        paid_refs = [row[0] for row in connection.execute(DELTA_PAID_SQL.format(**counts))]

    folder = Path(documents) / "facture"
    for ref in new_refs + paid_refs:
        (folder / ref).mkdir(exist_ok=True)
        (folder / ref / f"{ref}.pdf").write_bytes(invoice_pdf(ref) + f"% written {time.time()}\n".encode())
    untouched = sorted(set(path.name for path in folder.iterdir()) - set(new_refs) - set(paid_refs))
    for ref in untouched[:DELTA_DELETED_FOLDERS]:
        shutil.rmtree(folder / ref)


def _baseline(cluster: PostgresCluster, root: Path) -> tuple[float, dict[str, float]]:
    """Dump prod to a file, DROP OWNED, pg_restore: the way a typical reset script does it."""
    env = {**os.environ, **cluster.client_env()}
    dump = root / "baseline.dump"
    sandbox = cluster.uri(SANDBOX, SANDBOX_OWNER)
    steps = {
        "pg_dump": ["pg_dump", "-Fc", "--no-owner", "--no-privileges", "-f", str(dump), "-d", cluster.uri(PROD, PROD_READER)],
        "drop_owned": ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", sandbox, "-c",
                       "DROP OWNED BY CURRENT_USER; CREATE SCHEMA IF NOT EXISTS public;"],
        "pg_restore": ["pg_restore", "--no-owner", "--no-privileges", "--exit-on-error", "-d", sandbox, str(dump)],
    }
    phases = {}
    for name, command in steps.items():
        phases[name] = round(_timed(subprocess.run, command, check=True, env=env, capture_output=True)[0], 2)
    return sum(phases.values()), phases


def _floor(cluster: PostgresCluster) -> None:
    cluster.psql(f"CREATE DATABASE bench_floor TEMPLATE {SANDBOX} STRATEGY FILE_COPY", user=SANDBOX_OWNER)
    cluster.psql("DROP DATABASE bench_floor", user=SANDBOX_OWNER)


def _sizes(cluster: PostgresCluster, checkpoints: Path) -> dict:
    """Return the database's size, and the documents' from the checkpoint's manifest, without a walk."""
    database = int(cluster.psql(f"SELECT pg_database_size('{PROD}')").strip())
    files = folders = size = 0
    for manifest in checkpoints.glob("*/manifest"):
        with open(manifest) as lines:
            for line in lines:
                fields = line.rstrip("\n").split("\t")
                if fields[1] == "f":
                    files += 1
                    size += int(fields[2])
                else:
                    folders += 1
    return {"database_mb": round(database / 2**20), "documents_files": files, "documents_folders": folders,
            "documents_mb": round(size / 2**20, 1)}


def _timed(function, *args, **kwargs) -> tuple[float, object]:
    started = time.monotonic()
    value = function(*args, **kwargs)
    return time.monotonic() - started, value


def _report(results: dict, arguments: argparse.Namespace) -> str:
    ratios = {
        "rewind / floor": results["rewind"] / results["floor"],
        "rewind / refresh": results["rewind"] / results["refresh"],
        "refresh / baseline": results["refresh"] / results["baseline"],
    }
    lines = [
        f"### {arguments.size_mb} MiB target, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        "",
        f"Machine: {platform.node()}, {os.cpu_count()} CPUs, {_memory_gb()} GB RAM, {platform.platform()}, "
        f"{_server_version()}. Data: prod database {results['sizes']['database_mb']} MiB, "
        f"{results['sizes']['documents_files']} document files in {results['sizes']['documents_folders']} folders "
        f"({results['sizes']['documents_mb']} MiB). Delta before the steady-state refresh: "
        f"{DELTA_NEW_INVOICES:.1%} new invoices with lines and PDFs, {DELTA_PAID_INVOICES:.1%} marked paid with "
        f"their PDFs written again, {DELTA_EDITED_THIRD_PARTIES} third parties edited, "
        f"{DELTA_DELETED_FOLDERS} invoice folders deleted. "
        f"Command: `python3 bench/checkpoint_bench.py --size-mb {arguments.size_mb} --seed {arguments.seed}{_script_option(arguments)}`.",
        "",
        "| measure | seconds |",
        "|---|---|",
    ]
    for name in MEASURES:
        label = "refresh (steady state)" if name == "refresh" else name
        lines.append(f"| {label} | {results[name]:.2f} |")
    lines += ["", "| ratio (refresh = steady state) | value | target | met |", "|---|---|---|---|"]
    for name, value in ratios.items():
        lines.append(f"| {name} | {value:.3f} | ≤ {TARGETS[name]} | {'yes' if value <= TARGETS[name] else 'NO'} |")
    memory_met = "yes" if results["tool_peak_mb"] <= MEMORY_TARGET_MB else "NO"
    cold_ratio = results["refresh (cold)"] / results["baseline"]
    lines += [
        f"| tool peak memory (MiB) | {results['tool_peak_mb']:.0f} | ≤ {MEMORY_TARGET_MB} | {memory_met} |",
        f"| refresh (cold) / baseline, no target | {cold_ratio:.3f} | | |",
        "",
        "Documents phase: " + "; ".join(f"{name}: {text}" for name, text in results.get("documents", {}).items()) + ".",
        "",
        f"Largest child process (psql, pg_dump, pg_restore) peak memory: {results['children_peak_mb']:.0f} MiB.",
        "",
        "Phase timings (seconds):",
        "",
        "```",
        json.dumps(results["phases"], indent=1),
        "```",
    ]
    return "\n".join(lines)


def _script_option(arguments: argparse.Namespace) -> str:
    default = REPO_ROOT / "ops" / "sandbox" / "sandbox-lifecycle.sh"
    return "" if arguments.script.resolve() == default else f" --script {arguments.script}"


def _memory_gb() -> int:
    return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30)


def _server_version() -> str:
    output = subprocess.run(["psql", "--version"], capture_output=True, text=True).stdout.strip()
    return output.replace("psql (PostgreSQL)", "PostgreSQL")


if __name__ == "__main__":
    options = _parse_arguments()
    if options.generate_into:
        _generate_into(*options.generate_into, size_mb=options.size_mb, seed=options.seed)
        sys.exit(0)
    if options.delta_into:
        _delta_into(*options.delta_into, size_mb=options.size_mb)
        sys.exit(0)
    sys.exit(main())
