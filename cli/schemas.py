"""The answers of `retrieve serve`'s API as OpenAPI schemas (pydantic models), and the errors
each route can send: what /openapi.json and /docs describe, checked against the real answers
by the tests. Documentation only: the routes build their JSON themselves (cli/app.py's JSON,
which keeps the bytes of file names that are not UTF-8)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Open(BaseModel):
    """A JSON object that may gain fields in later versions."""

    model_config = ConfigDict(extra="allow")


class Error(BaseModel):
    """Every error: one line that says what went wrong, with the HTTP status that says what
    kind of error it is."""

    model_config = ConfigDict(extra="forbid")
    error: str = Field(examples=["no image with id 99999 in the index"])


class Info(Open):
    """What `retrieve info --json` prints: the manifest, with the size on disk."""

    format: str
    version: int
    generation: int
    count: int = Field(description="images in the index")
    dim: int
    factory: str
    index: str = Field(description="the index folder")
    size_on_disk: int = Field(description="bytes")


class Limits(Open):
    """What this server accepts."""

    max_upload_bytes: int = Field(description="the largest upload (--max-upload-mb)")
    max_k: int = Field(description="the most neighbours a query may ask for")
    max_queries: int = Field(description="the most images one search may send")
    allow_actions: bool = Field(description="duplicates plans may be applied and undone here "
                                            "(serve --allow-actions)")
    move_to: str | None = Field(description="the folder plans applied here may move files "
                                            "into (serve --move-to); null: no moves")


class Folder(Open):
    path: str
    images: int = Field(description="images directly in it (not in its subfolders)")


class Folders(Open):
    root: str = Field(description="the deepest folder that holds every image")
    folders: list[Folder]


class Item(Open):
    id: int
    path: str


class Items(Open):
    total: int = Field(description="images that match the filters")
    offset: int
    limit: int
    items: list[Item]


class ItemFacts(Open):
    """An indexed image and its file as it is now."""

    id: int
    path: str
    name: str
    folder: str
    bytes: int
    modified: str = Field(description="the file's modification time, ISO 8601 UTC")
    indexed: str = Field(description="when the image was indexed, ISO 8601 UTC")
    width: int | None = Field(description="pixels; null when the header cannot be read")
    height: int | None
    media_type: str


class Result(Open):
    rank: int
    id: int
    path: str
    distance: float = Field(description="Euclidean distance of the fc7 vectors")
    closer_than: float | None = Field(
        description="the share (0 to 1) of the index's images whose nearest other image is "
                    "farther than this one: 1 closer than any, 0.5 a typical nearest "
                    "neighbour (from a sample of 256; null before it is measured)")


class Neighbours(Open):
    k: int
    id: int = Field(description="the image asked about, which its results leave out")
    results: list[Result]


class Query(Open):
    query: str = Field(description="the uploaded file's name")
    results: list[Result]


class Search(Open):
    """``results`` for one uploaded image; ``queries`` for several."""

    k: int
    results: list[Result] | None = None
    queries: list[Query] | None = None


class Member(Open):
    id: int
    path: str
    distance: float = Field(description="fc7 distance to the file to keep")
    similarity: float | None = Field(description="pixel correlation with the file to keep")
    difference: float | None
    width: int
    height: int
    bytes: int
    same_bytes_as: str | None = Field(None, description="in a near group, the member whose "
                                                        "bytes it has")


class SearchSettings(Open):
    threshold: float | None = Field(description="fc7 distance; null: calibrated")
    verify: bool
    min_similarity: float
    max_difference: float


class Job(Open):
    """A search for duplicates in the background."""

    id: int
    state: str = Field(description="running, done, cancelled or failed")
    stage: str = Field(description="starting, hashing (files), calibrating (images), searching "
                                   "(images), sketching (files), verifying (pairs), weighing "
                                   "(files: whether each copy is faint), done")
    done: int = Field(description="of the stage's total")
    total: int
    generation: int = Field(description="the index's generation it searches")
    started: float = Field(description="seconds since the epoch")
    finished: float | None
    seconds: float = Field(description="how long it ran, or has run so far")
    cancelling: bool = Field(description="a cancel was asked for; it stops at its next step")
    error: str | None = Field(description="why it failed")
    settings: SearchSettings


class JobStatus(Open):
    version: int = Field(description="grows at every change: ?after=VERSION waits for the next")
    job: Job | None = Field(description="the latest search; null before the first")


class Group(Open):
    tier: str = Field(description="exact (the same bytes) or near")
    paths: list[str]
    members: list[Member] = Field(description="the file to keep first")


class Duplicates(Open):
    """What `retrieve duplicates --json` prints."""

    index: str
    images: int
    threshold: float
    threshold_source: str
    candidates: int
    verified: int
    compared: int = Field(description="pairs whose pixels this run compared; the others' "
                                      "comparisons were saved by an earlier run")
    groups: list[Group]


class PlannedFile(Open):
    path: str
    id: int
    action: str = Field(description="keep, trash, move, hardlink or symlink")
    reason: str
    size: int
    mtime_ns: int
    width: int
    height: int
    distance: float
    similarity: float | None
    difference: float | None
    faint: bool = Field(False, description="a near copy whose picture or the kept file's is "
                                           "faint: kept for review unless act_on_faint")


class PlannedGroup(Open):
    tier: str
    files: list[PlannedFile] = Field(description="the file to keep first")


class GroupsPage(Open):
    """Groups of duplicates a page at a time, each as a plan has it."""

    total: int
    offset: int
    limit: int
    images: int
    threshold: float
    groups: list[PlannedGroup]


class Plan(Open):
    """What `retrieve duplicates --plan` writes and `--apply` takes."""

    format: str
    version: int
    index: str
    action: str
    act_on_faint: bool = False
    groups: list[PlannedGroup]


class Decision(Open):
    a: str
    b: str
    at: float = Field(description="seconds since the epoch")


class Decisions(Open):
    not_duplicates: list[Decision]


class Marked(Open):
    marked: int = Field(description="pairs newly marked")


class Forgotten(Open):
    forgotten: int = Field(description="pairs forgotten")


class GoneFile(Open):
    id: int
    path: str
    action: str
    message: str


class Gone(Open):
    gone: list[GoneFile]


class Outcome(Open):
    """What applying or undoing a plan did."""

    journal: str = Field(description="its name, for /undo")
    files: dict[str, int] = Field(description="files per action")
    bytes: int
    earlier: int = Field(description="steps an earlier run of the same plan had done")
    problems: list[str]


WHY = {400: "a bad parameter, or an upload that is not an image",
       401: "no token, or a wrong one (serve --token)",
       403: "applying or undoing a plan needs serve --allow-actions, and only for this index",
       404: "no image with this id in the index (or no such journal)",
       409: "the index was rebuilt with other weights during the request (for a plan: a file "
            "changed since it was made; for duplicates: the search was cancelled, or one with "
            "other settings is running)",
       410: "the indexed file can no longer be read",
       411: "an upload without a Content-Length",
       413: "an upload larger than --max-upload-mb",
       503: "the index is damaged"}


def errors(*statuses: int) -> dict:
    """The ``responses`` of a route that can answer with these error statuses."""
    return {s: {"model": Error, "description": WHY[s]} for s in statuses}


def image(media_type: str, description: str) -> dict:
    """The 200 ``responses`` entry of a route that answers with an image."""
    return {200: {"description": description,
                  "content": {media_type: {"schema": {"type": "string", "format": "binary"}}}}}


UPLOAD = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["image"],
    "properties": {"image": {"type": "array", "items": {"type": "string", "format": "binary"},
                             "description": "the image to search with; repeat the field "
                                            "for several (64 at most)"}}}}}}}
