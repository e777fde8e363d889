"""`retrieve serve`: the index as a JSON API and a page to browse it, until Ctrl-C."""

from __future__ import annotations

import ipaddress
import os
import secrets
import socket
from pathlib import Path

import click

from cli.options import device_option, faiss_on, index_option

DEFAULT_PORT = 8000
DEFAULT_MAX_UPLOAD_MB = 20.0
TOKEN_BYTES = 16  # of the token --allow-actions makes when none is given


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """A listening socket (port 0: any free one), so that the address is known before serving."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Inherited by every accepted connection: without it a keep-alive client waits ~40 ms a
    # response (Nagle's algorithm against delayed ACKs), as uvicorn's own sockets do not.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise click.ClickException(f"cannot listen on {host}:{port} ({e.strerror})") from None
    return sock


@click.command()
@index_option
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (0.0.0.0: every interface; then set a --token).")
@click.option("--port", type=click.IntRange(0, 65535), default=DEFAULT_PORT, show_default=True,
              help="Port to listen on (0: any free one).")
@click.option("--token", default=lambda: os.environ.get("RETRIEVE_TOKEN"),
              show_default="$RETRIEVE_TOKEN", metavar="TOKEN",
              help="Ask every API request for this token (Authorization: Bearer TOKEN, or "
                   "?token=TOKEN; open the page as /?token=TOKEN).")
@click.option("--max-upload-mb", type=click.FloatRange(min=0, min_open=True),
              default=DEFAULT_MAX_UPLOAD_MB, show_default=True,
              help="Largest upload a search accepts, refused before it is read.")
@click.option("--allow-actions", is_flag=True,
              help="Let the page apply and undo duplicates plans (trash, links; moves only "
                   "with --move-to). Needs a token: one is made if none is given.")
@click.option("--move-to", type=click.Path(file_okay=False, path_type=Path), metavar="DIR",
              help="With --allow-actions: the folder plans applied from the page may move "
                   "copies into.")
@device_option
def serve(index_dir, host, port, token, max_upload_mb, allow_actions, move_to, device):
    """Serve the index as a JSON API and a web page to browse it, until Ctrl-C.

    Loads the weights and the index once; queries that arrive together go through the
    network and the index as one batch; a build-index on the same index is picked up by
    the next request. The API is described at /docs (served offline, as the page is).

    \b
    retrieve serve --index retrieve-index            # then open http://127.0.0.1:8000/
    retrieve serve --host 0.0.0.0 --port 8080 --token "$(openssl rand -hex 16)"
    retrieve serve --allow-actions --move-to ~/duplicates   # the page may apply plans
    """
    from functools import partial

    import uvicorn

    from cli.app import create_app
    from indexes.search.service import IndexService
    from retrieval.config import ExtractConfig
    from retrieval.features import FeatureExtractor

    if move_to is not None and not allow_actions:
        raise click.UsageError("--move-to is for --allow-actions")
    made = None  # a token made here is shown in the page's address; one given is not
    if allow_actions and not token:
        token = made = secrets.token_urlsafe(TOKEN_BYTES)
    if not is_loopback(host) and not token:
        click.echo(f"warning: serving on {host} without --token: anyone who can reach this "
                   "machine can browse and download the indexed images", err=True)
    faiss_on(device)
    service = IndexService(index_dir, partial(FeatureExtractor.load,
                                              config=ExtractConfig(1, 0, device)))
    try:
        sock = bind(host, port)
        shown = f"[{host}]" if ":" in host else host
        address = f"http://{shown}:{sock.getsockname()[1]}/"
        hint = f"?token={made}" if made else "?token=..." if token else ""
        click.echo(f"Serving {service.store.count} images of {service.store.folder} at "
                   f"{address}{hint} (Ctrl-C to stop)", err=True)
        app = create_app(service, token, max_upload_mb, allow_actions,
                         move_to and os.path.abspath(move_to))
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
        try:
            server.run(sockets=[sock])
        except KeyboardInterrupt:  # uvicorn has shut down cleanly, then re-raised Ctrl-C
            pass
    finally:
        service.close()
    click.echo("Stopped.", err=True)
