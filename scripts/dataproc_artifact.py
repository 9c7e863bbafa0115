"""Build the Dataproc artefact of the ETL (`make dataproc-artifact`) into `<dist>/dataproc/`.

    entrypoint.py          the batch's main file (a copy of src/shopflow/transform/entrypoint.py)
    shopflow.zip           for --py-files: shopflow and every pure-Python distribution of
                           `shopflow[gcp]`, resolved with constraints.txt for the cluster's Python
    runtime-provided.txt   the distributions with compiled code that are left out of the zip

Why a --py-files zip: Dataproc (Serverless batches and clusters alike) puts --py-files (.py, .egg,
.zip) on the driver's PYTHONPATH before the main file starts, whatever the deploy mode, so
`import shopflow` works at the first line of the entry point. Python cannot import extension
modules from a zip, so distributions with compiled code (numpy, pyarrow, pydantic-core, ...)
are not in it; pyspark and py4j are the cluster's and are never in it either. A pure-Python
distribution that pins a compiled one exactly (pydantic pins pydantic-core) is left out with it:
the pair must come from the same place.

Usage: python scripts/dataproc_artifact.py [--dist dist] [--python-version 3.12] [--wheel-only]
"""

from __future__ import annotations

import argparse
import email.parser
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: Never shipped: the cluster provides Spark and its Python side.
CLUSTER_PROVIDED = frozenset({"pyspark", "py4j"})
#: Wheel platforms of the Dataproc images (Debian/Ubuntu, glibc >= 2.28, x86_64).
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
#: Fixed timestamp of every zip entry, so the same inputs give the same bytes.
ZIP_TIME = (2020, 1, 1, 0, 0, 0)


def canonical(name: str) -> str:
    """A distribution name as pip compares it (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def build_wheel(dist: Path) -> Path:
    """The shopflow wheel, built into `dist/` from a copy of the sources (setuptools' build/
    folder in the tree would keep files since deleted, and two builds would share it)."""
    dist.mkdir(parents=True, exist_ok=True)
    for old in dist.glob("shopflow-*.whl"):
        old.unlink()
    with tempfile.TemporaryDirectory(prefix="shopflow-wheel-") as tmp:
        source = Path(tmp)
        junk = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
        shutil.copytree(ROOT / "src", source / "src", ignore=junk)
        for name in ("pyproject.toml", "README.md"):
            shutil.copyfile(ROOT / name, source / name)
        pip = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(dist)]
        subprocess.run([*pip, str(source)], check=True)
    (wheel,) = dist.glob("shopflow-*.whl")
    return wheel


def install_for_cluster(wheel: Path, target: Path, python_version: str) -> None:
    """`shopflow[gcp]` and its dependencies as wheels for the cluster's Python, into `target`."""
    command = [
        *(sys.executable, "-m", "pip", "install", "--quiet", "--no-compile"),
        *("--target", str(target), "--only-binary=:all:", "--implementation", "cp"),
        *("--python-version", python_version),
        *(arg for platform in PLATFORMS for arg in ("--platform", platform)),
        *("--constraint", str(ROOT / "constraints.txt")),
        f"{wheel}[gcp]",
    ]
    subprocess.run(command, check=True)


def _metadata(dist_info: Path, name: str) -> email.message.Message:
    return email.parser.Parser().parsestr((dist_info / name).read_text(encoding="utf-8"))


def split_native(target: Path) -> tuple[dict[str, Path], dict[str, Path]]:
    """The installed distributions (canonical name -> .dist-info) as (pure, native)."""
    pure: dict[str, Path] = {}
    native: dict[str, Path] = {}
    pins: dict[str, set[str]] = {}
    for dist_info in sorted(target.glob("*.dist-info")):
        meta = _metadata(dist_info, "METADATA")
        name = canonical(meta["Name"])
        tags = _metadata(dist_info, "WHEEL").get_all("Tag") or []
        compiled = any(not tag.endswith("-none-any") for tag in tags)
        (native if compiled else pure)[name] = dist_info
        pins[name] = {
            canonical(m.group(1))
            for req in meta.get_all("Requires-Dist") or []
            if "extra ==" not in req
            and (m := re.match(r"\s*([A-Za-z0-9._-]+)[^;]*?==", req)) is not None
        }
    moved = True
    while moved:  # a pure distribution pinning a native one exactly goes with it
        moved = False
        for name in list(pure):
            if pins[name] & native.keys():
                native[name] = pure.pop(name)
                moved = True
    return pure, native


def remove_distribution(target: Path, dist_info: Path) -> None:
    """Delete every file the distribution's RECORD lists (and its empty folders)."""
    for line in (dist_info / "RECORD").read_text(encoding="utf-8").splitlines():
        relative = line.rsplit(",", 2)[0]
        path = (target / relative).resolve()
        if path.is_relative_to(target.resolve()) and path.is_file():
            path.unlink()
    shutil.rmtree(dist_info, ignore_errors=True)
    for folder in sorted(target.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


def write_zip(source: Path, archive: Path) -> None:
    """Zip `source`'s tree (sorted, fixed timestamps, no bytecode) into `archive` atomically.

    Folders get entries of their own: zipimport finds a namespace package (`google/`, shared
    with the runtime's protobuf) only through its folder's entry.
    """
    partial = archive.with_name(archive.name + ".partial")
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as zipped:
        for path in sorted(source.rglob("*")):
            if "__pycache__" in path.parts or path.suffix == ".pyc":
                continue
            name = path.relative_to(source).as_posix() + ("/" if path.is_dir() else "")
            info = zipfile.ZipInfo(name, date_time=ZIP_TIME)
            info.compress_type = zipfile.ZIP_STORED if path.is_dir() else zipfile.ZIP_DEFLATED
            info.external_attr = (0o40755 if path.is_dir() else 0o644) << 16
            zipped.writestr(info, b"" if path.is_dir() else path.read_bytes())
    partial.replace(archive)


def build(dist: Path, python_version: str) -> Path:
    """Build the wheel and `dist/dataproc/`; returns that folder."""
    wheel = build_wheel(dist)
    out = dist / "dataproc"
    out.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="shopflow-dataproc-") as tmp:
        target = Path(tmp) / "site"
        install_for_cluster(wheel, target, python_version)
        shutil.rmtree(target / "bin", ignore_errors=True)
        pure, native = split_native(target)
        forbidden = CLUSTER_PROVIDED & (pure.keys() | native.keys())
        if forbidden:
            raise SystemExit(f"dataproc-artifact: {sorted(forbidden)} must come from the cluster")
        versions = {n: _metadata(d, "METADATA")["Version"] for n, d in native.items()}
        for dist_info in native.values():
            remove_distribution(target, dist_info)
        write_zip(target, out / "shopflow.zip")
    (out / "runtime-provided.txt").write_text(
        "# Distributions of shopflow[gcp] with compiled code (or pinned to one), left out of\n"
        "# shopflow.zip: the batch's Python must provide those the job imports. Versions as\n"
        f"# resolved for CPython {python_version} with constraints.txt.\n"
        + "".join(f"{name}=={versions[name]}\n" for name in sorted(versions)),
        encoding="utf-8",
    )
    shutil.copyfile(ROOT / "src/shopflow/transform/entrypoint.py", out / "entrypoint.py")
    size_mib = (out / "shopflow.zip").stat().st_size / 2**20
    print(
        f"dataproc-artifact: {wheel}; "
        f"{out}/shopflow.zip ({size_mib:.1f} MiB, {len(pure)} distributions), entrypoint.py, "
        f"runtime-provided.txt ({len(native)} distributions with compiled code)"
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dist", type=Path, default=ROOT / "dist", help="output folder")
    parser.add_argument(
        "--python-version", default="3.12", help="the cluster's Python (Dataproc 2.2/3.0: 3.12)"
    )
    parser.add_argument("--wheel-only", action="store_true", help="build the wheel only")
    args = parser.parse_args()
    if args.wheel_only:
        print(build_wheel(args.dist.resolve()))
    else:
        build(args.dist.resolve(), args.python_version)


if __name__ == "__main__":
    main()
