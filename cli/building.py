"""What `retrieve build-index` says while it builds once, or watches: the walk it asks for,
the build's report, the skipped files, and each generation of a watch."""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path

import click

from cli.options import progress_enabled
from cli.output import printable


class Build:
    """One build-index command: ``prepare`` it, then ``run`` it once or ``watch``."""

    def __init__(self, paths, index_dir: Path, config, errors_file: Path | None,
                 quiet: bool) -> None:
        self.paths, self.index_dir, self.config = paths, index_dir, config
        self.errors_file, self.quiet = errors_file, quiet
        self.first = True  # this process plans, commits and reports (rank 0 under torchrun)
        self.reported: set[tuple[str, str]] = set()  # skipped files said already (--watch)

    def prepare(self, weights: str | None, extract, team) -> None:
        """Load the network with the weights and the walk with the selection to build with:
        those asked for, else the index's own (rank 0 alone reads the database)."""
        from indexes.build.incremental import recorded_settings, weights_to_build_with
        from retrieval.features import FeatureExtractor
        from retrieval.walk import Selection

        self.first = team is None or team.rank == 0
        recorded = recorded_settings(self.index_dir) if self.first else {}
        if self.first:
            weights = weights_to_build_with(self.index_dir,
                                            weights or os.environ.get("RETRIEVE_WEIGHTS"))
        if team is not None:
            weights = team.broadcast(weights)
        self.selection = Selection.kept(self.config.exclude, self.config.raw, recorded)
        self.config = replace(self.config, exclude=self.selection.exclude, raw=self.selection.raw)
        self.extractor = FeatureExtractor.load(weights, config=extract,
                                               progress=self.first and progress_enabled(self.quiet))

    def images(self):
        """The walk of PATH... (a generator: a build takes the paths as they come)."""
        from retrieval.walk import Walked, find_images

        self.walked = Walked()
        if not self.first:
            return iter(())
        return find_images(self.paths, exclude=[self.index_dir], selection=self.selection,
                           walked=self.walked)

    def run(self, rebuild: bool, team):
        """Build once; the report, or None on a rank other than 0 of a torchrun build."""
        from indexes.build.incremental import NothingIndexed, build_index

        try:
            report = build_index(self.index_dir, self.images(), self.extractor, self.config,
                                 rebuild=rebuild, team=team)
        except NothingIndexed as e:
            self.skipped(e.skipped)
            raise
        if not self.first:
            return None
        self.skipped(report.skipped)
        self.export()
        return report

    def export(self) -> None:
        """The index's fc7 network in ONNX, so that `retrieve query` needs no torch; a build
        goes on without it (queries then load torch, as before), saying why."""
        from retrieval.errors import ExportError

        try:
            from retrieval.onnx_export import write_export

            write_export(self.index_dir, self.extractor.weights)
        except (ExportError, ImportError) as e:
            click.echo(printable(f"note: {e}; `retrieve query` will load torch"), err=True)

    def summary(self, report) -> None:
        click.echo(
            f"Indexed {report.total} images ({report.new} new, {report.changed} changed, "
            f"{report.removed} removed, {len(report.skipped)} skipped) into {self.index_dir} "
            f"in {report.seconds:.1f} s ({report.images_per_second:.1f} images/s)")
        if report.reused:
            click.echo(f"Resumed: {report.reused} images taken from the interrupted build's "
                       "staging, not extracted again", err=True)
        left = []
        if self.walked.paired:
            kept = "its RAW file" if self.selection.raw == "raw" else "its JPEG or HEIC"
            left.append(f"{self.walked.paired} files of RAW+JPEG pairs left out, each pair "
                        f"indexed as {kept} (--raw)")
        if self.walked.excluded:
            n = len(self.walked.ignore_files)
            by = f", .retrieveignore in {n} folder{'s' if n > 1 else ''}" if n else ""
            left.append(f"{self.walked.excluded} files or folders excluded (--exclude{by})")
        if left:
            click.echo("Not indexed: " + "; ".join(left), err=True)

    def skipped(self, skipped: list[tuple[str, str]]) -> None:
        """One line per skipped file on stderr (a watch says each once), and the --errors
        file."""
        for path, reason in skipped:
            if (path, reason) not in self.reported:
                click.echo(printable(f"skipped {path}: {reason}"), err=True)
        self.reported.update(skipped)
        if self.errors_file is not None:  # one line per file: names escaped as on a terminal
            lines = "".join(f"{printable(p)}\t{printable(r)}\n" for p, r in skipped)
            self.errors_file.write_text(lines)

    def watch(self, poll_seconds: float | None, rebuild: bool) -> None:
        """Build, then follow PATH... until Ctrl-C (exit 0: the index holds every change
        committed so far; one interrupted mid-build is resumed by the next run)."""
        from indexes.build.incremental import NothingIndexed
        from indexes.build.watch import network_mount, watch_index

        poll_ms = None if poll_seconds is None else round(poll_seconds * 1000)
        mount = network_mount(self.paths) if poll_ms is None else None
        if mount:
            from indexes.build.watch import POLL_MS

            poll_ms = POLL_MS
        try:
            watch_index(self.index_dir, self.paths, self.images, self.extractor, self.config,
                        self._generation(mount, poll_ms), poll_ms=poll_ms, rebuild=rebuild)
        except NothingIndexed as e:
            self.skipped(e.skipped)
            raise
        except KeyboardInterrupt:
            click.echo(f"Stopped watching; {self.index_dir} holds every change committed",
                       err=True)

    def _generation(self, mount: str | None, poll_ms: int | None):
        def said(generation) -> None:
            if generation.first:
                self.skipped(generation.report.skipped)
                self.export()
                self.summary(generation.report)
                how = (f"looking every {poll_ms / 1000:g} s" + (f" ({mount} mount)" if mount
                                                                else "")) if poll_ms else "events"
                click.echo(f"Watching {', '.join(map(str, self.paths))} ({how}); Ctrl-C to stop",
                           err=True)
                return
            now = time.strftime("%H:%M:%S")
            if generation.error is not None:
                click.echo(f"{now} not committed: {generation.error}", err=True)
                return
            r = generation.report
            self.skipped(r.skipped)
            if r.new or r.changed or r.removed:
                click.echo(f"{now} {r.new} new, {r.changed} changed, {r.removed} removed, "
                           f"{len(r.skipped)} skipped: {r.total} images")

        return said
