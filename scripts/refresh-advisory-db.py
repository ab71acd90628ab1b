#!/usr/bin/env python3
"""The RustSec advisory database for `cargo deny check advisories`, without GitHub.

CI reaches crates.io but not GitHub, where rustsec/advisory-db lives, so the advisories that
concern our dependencies are vendored in .ci/advisory-db/ and laid out for cargo-deny from there.

  refresh-advisory-db.py refresh ADVISORY_DB_CHECKOUT
      Copies crates/<name>/ from a git clone (or bare mirror) of rustsec/advisory-db, at its
      HEAD, for every crate named in Cargo.lock or fuzz/Cargo.lock; records the commit and its
      date (SNAPSHOT) and the name of every crate the database has advisories for at that commit
      (crates-with-advisories.txt). Run it after changing dependencies, and now and then.

  refresh-advisory-db.py install DB_ROOT
      Fails, naming them, if a crate in our lock files has advisories in the snapshot's database
      but none vendored (a dependency added since the last refresh): its advisories would
      otherwise go unchecked without a word. Then lays the vendored entries out under DB_ROOT
      the way cargo-deny opens a fetched database, dated by the snapshot's commit (not by when
      it was copied) so cargo-deny's staleness limit measures the snapshot's real age, and
      prints what is and is not checked.
"""

import datetime
import os
import pathlib
import shutil
import subprocess
import sys
import tomllib

ROOT = pathlib.Path(__file__).resolve().parent.parent
VENDORED = ROOT / ".ci" / "advisory-db"
LOCK_FILES = [ROOT / "Cargo.lock", ROOT / "fuzz" / "Cargo.lock"]
SOURCE_URL = "https://github.com/rustsec/advisory-db"
# cargo-deny keeps the database of a URL in `<last path segment>-<xxhash64 of the URL>`; this is
# the folder of SOURCE_URL, the default database (cargo-deny's CHANGELOG, PR #746).
CARGO_DENY_FOLDER = "advisory-db-3157b0e258782691"


def registry_crates_in_lock_files():
    names = set()
    for lock_file in LOCK_FILES:
        if lock_file.exists():
            with lock_file.open("rb") as file:
                for package in tomllib.load(file).get("package", []):
                    # Path crates are ours; advisories name crates from a registry.
                    if "source" in package:
                        names.add(package["name"])
    return names


def git(checkout, *args):
    return subprocess.run(
        ["git", "-C", str(checkout), *args], check=True, capture_output=True
    ).stdout


def read_snapshot():
    fields = {}
    for line in (VENDORED / "SNAPSHOT").read_text().splitlines():
        key, _, value = line.partition(" = ")
        fields[key] = value
    return fields


def refresh(checkout):
    commit = git(checkout, "rev-parse", "HEAD").decode().strip()
    date = git(checkout, "show", "-s", "--format=%cI", "HEAD").decode().strip()
    listing = git(checkout, "ls-tree", "-r", "--name-only", "HEAD", "crates/").decode()
    files_by_crate = {}
    for path in listing.splitlines():
        parts = path.split("/")
        if len(parts) == 3 and parts[2].endswith(".md"):
            files_by_crate.setdefault(parts[1], []).append(path)

    wanted = sorted(registry_crates_in_lock_files() & files_by_crate.keys())
    if VENDORED.exists():
        shutil.rmtree(VENDORED)
    (VENDORED / "crates").mkdir(parents=True)
    count = 0
    for name in wanted:
        for path in files_by_crate[name]:
            target = VENDORED / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(git(checkout, "show", f"HEAD:{path}"))
            count += 1
    # The advisories are CC0-1.0, some CC-BY-4.0 (their `license` field): the licences travel
    # with them.
    for path in ["LICENSE.txt", "LICENSES/CC0-1.0.txt", "LICENSES/CC-BY-4.0.txt"]:
        target = VENDORED / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(git(checkout, "show", f"HEAD:{path}"))
    (VENDORED / "crates-with-advisories.txt").write_text(
        "".join(f"{name}\n" for name in sorted(files_by_crate))
    )
    (VENDORED / "SNAPSHOT").write_text(
        f"source = {SOURCE_URL}\ncommit = {commit}\ndate = {date}\n"
        f"vendored = {count} advisories for {len(wanted)} crates\n"
    )
    print(f"vendored {count} advisories for {len(wanted)} crates from {SOURCE_URL} at {commit} ({date})")


def install(db_root):
    snapshot = read_snapshot()
    in_database = set((VENDORED / "crates-with-advisories.txt").read_text().split())
    vendored = {path.name for path in (VENDORED / "crates").iterdir()}
    missing = sorted((registry_crates_in_lock_files() & in_database) - vendored)
    if missing:
        print(
            "advisories: the vendored database lacks the advisories of "
            + ", ".join(missing)
            + " (dependencies added since it was refreshed); they are NOT checked. "
            "Run scripts/refresh-advisory-db.py refresh <a clone of " + SOURCE_URL + ">.",
            file=sys.stderr,
        )
        sys.exit(1)

    database = pathlib.Path(db_root).expanduser() / CARGO_DENY_FOLDER
    marker = database / ".git" / "FETCH_HEAD"
    commit_line = f"{snapshot['commit']}\t\tbranch 'main' of {SOURCE_URL}\n"
    if not (marker.exists() and marker.read_text() == commit_line):
        if database.exists():
            shutil.rmtree(database)
        shutil.copytree(VENDORED / "crates", database / "crates")
        marker.parent.mkdir(parents=True)
        marker.write_text(commit_line)
    # cargo-deny takes the time of the last fetch from FETCH_HEAD's modification time.
    date = datetime.datetime.fromisoformat(snapshot["date"])
    os.utime(marker, (date.timestamp(), date.timestamp()))

    age = (datetime.datetime.now(datetime.timezone.utc) - date).days
    print(
        f"advisories: {snapshot['vendored']} from {snapshot['source']} at "
        f"{snapshot['commit'][:12]} ({snapshot['date']}, {age} days old); advisories published "
        "since then are not checked"
    )


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "refresh":
        refresh(pathlib.Path(sys.argv[2]))
    elif len(sys.argv) == 3 and sys.argv[1] == "install":
        install(sys.argv[2])
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
