"""``edgetrack data``: build (or check) the photo library of the synthetic train split (see ``docs/synth.md``)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from edgetrack.cli._common import step_progress


def data_cmd(
    cache: Optional[Path] = typer.Option(None, "--cache", help="Cache folder (default: $EDGETRACK_CACHE or "
                                                               "~/.cache/edgetrack); the library goes to <cache>/photos."),
    check: bool = typer.Option(False, "--check", help="Only verify the library against its manifest (no download); "
                                                      "exit status 2 when it is missing or damaged."),
    force: bool = typer.Option(False, "--force", help="Build it again even when it verifies."),
    debs: Optional[Path] = typer.Option(None, "--debs", help="Folder of already downloaded .deb files to use "
                                                             "instead of downloading them (still checked)."),
    any_version: bool = typer.Option(False, "--any-version", help="Accept packages whose SHA-256 is not the "
                                                                  "pinned one (another Debian release); warns."),
) -> None:
    """Build the photo library of the synthetic train split: real photographs from the Debian packages gnome-backgrounds, plasma-workspace-wallpapers, sway-backgrounds, ukui-wallpapers and opencv-doc (apt-get download, no root; about 250 MB downloaded, a few minutes), checked against pinned SHA-256s, selected by simple rules (photographs, not diagrams), resized to 1024 px and cached with a manifest. Running it again does nothing when the library verifies. `edgetrack synth --split train` and training pick it up by themselves.

    Example: edgetrack data && edgetrack data --check
    """
    from edgetrack.synth.library import PACKAGES, build_library, current_library, default_library_dir, verify_library

    root = default_library_dir(cache)
    if check:
        lib = verify_library(root)
        per: dict[str, int] = {}
        for p in lib.photos:
            per[p.package] = per.get(p.package, 0) + 1
        typer.echo(f"{root}: {len(lib)} photos verified (id {lib.fingerprint}): "
                   + ", ".join(f"{name} {n}" for name, n in per.items()))
        return
    lib = None if force else current_library(cache)
    if lib is not None:
        typer.echo(f"{lib.root}: {len(lib)} photos, verified; nothing to do (--force builds it again)")
        return
    with step_progress() as progress:
        report = build_library(cache, debs=debs, force=True, allow_other_versions=any_version, progress=progress)
    width = max(len(p.name) for p in PACKAGES)
    for name, n in report.per_package.items():
        typer.echo(f"  {name:<{width}}  {n:4d} photos")
    typer.echo(f"{report.photos} photos, {report.bytes / 1e6:.1f} MB in {report.root} ({report.seconds:.0f} s)")


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("data")(data_cmd)
