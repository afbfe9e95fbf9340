#!/usr/bin/env python3
"""Upload a file to vcw's tus endpoint with tuspy, the reference Python tus client.

The tests use it as a real third-party client of `POST /v1/uploads` (tus 1.0 core + creation):
it creates the upload (Upload-Length, Upload-Metadata `filename`, base64 as tus says), then
PATCHes it chunk by chunk; `Authorization: Bearer TOKEN` and `Vcw-Consent: JWT` (whose `sub`
is the data subject) go with every request.

    tus_upload.py --endpoint URL --token T --file F --consent JWT [--chunk-size N]
                  [--stop-after-chunks K] [--resume-url URL] [--filename NAME] [--timeout S]

  --stop-after-chunks K  send only K chunks, then stop as an interrupted client would
                         (0: create the upload and send nothing)
  --resume-url URL       continue that upload: ask the server for its offset (HEAD), send the
                         rest of the file from there (no creation, no metadata)

At the end it prints one JSON line to stdout:
    {"url": "<upload url>", "offset": <bytes the server confirmed>, "complete": <bool>}
("offset" is the server's Upload-Offset from its last answer, never a local count.)

Exit status: 0 done (complete or stopped as asked); 1 the server answered with an error
status: "tus_upload: <step> <url>: HTTP <status>" and the response body on stderr; 2 usage;
3 no usable answer (connection failed, a missing Upload-Offset, the time limit).

Run it with the virtualenv scripts/setup builds: .cache/tusvenv/bin/python tests/clients/tus_upload.py
"""
import argparse
import json
import os
import signal
import sys

try:
    from tusclient.client import TusClient
    from tusclient.exceptions import TusCommunicationError
except ImportError:
    # Started with a Python without tuspy: re-run with the project's virtualenv.
    VENV = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", ".cache",
                        "tusvenv", "bin", "python")
    if os.path.exists(VENV) and not os.environ.get("TUS_UPLOAD_REEXEC"):
        os.environ["TUS_UPLOAD_REEXEC"] = "1"
        os.execv(VENV, [VENV, os.path.abspath(__file__)] + sys.argv[1:])
    sys.exit("tus_upload: tuspy is not installed: run scripts/setup (builds .cache/tusvenv)")

DEFAULT_CHUNK = 4 << 20


class Failure(Exception):
    def __init__(self, code, message, body=b""):
        super().__init__(message)
        self.code, self.message, self.body = code, message, body


class OutOfTime(BaseException):
    """Raised by the alarm; a BaseException so that no library's `except Exception` eats it."""


def parse_args(argv):
    p = argparse.ArgumentParser(description="Upload a file to vcw's tus endpoint with tuspy.")
    p.add_argument("--endpoint", required=True,
                   help="the creation URL, e.g. http://127.0.0.1:8080/v1/uploads")
    p.add_argument("--token", required=True, help="bearer token, sent with every request")
    p.add_argument("--file", required=True, help="the file to upload")
    p.add_argument("--consent", required=True,
                   help="the data subject's consent token (sent as Vcw-Consent; the subject "
                   "comes from it)")
    p.add_argument("--filename", help="Upload-Metadata filename (default: the file's base "
                   "name; an empty string sends none)")
    p.add_argument("--metadata", action="append", default=[], metavar="KEY=VALUE",
                   help="extra Upload-Metadata entry (repeatable), e.g. callback_url=URL")
    p.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK,
                   help=f"bytes per PATCH (default {DEFAULT_CHUNK})")
    p.add_argument("--stop-after-chunks", type=int, metavar="K",
                   help="send only K chunks, then exit as an interrupted client")
    p.add_argument("--resume-url", metavar="URL",
                   help="continue this upload from the server's offset instead of creating one")
    p.add_argument("--timeout", type=float, default=600,
                   help="give up after this many seconds in all (default 600)")
    args = p.parse_args(argv)
    if any("=" not in m for m in args.metadata):
        p.error("--metadata takes KEY=VALUE")
    if args.chunk_size < 1:
        p.error("--chunk-size must be at least 1")
    if args.stop_after_chunks is not None and args.stop_after_chunks < 0:
        p.error("--stop-after-chunks must be 0 or more")
    return args


def rejected(step, url, error):
    """A tuspy error as a Failure: an HTTP status means the server said no."""
    status = getattr(error, "status_code", None)
    body = getattr(error, "response_content", None) or b""
    if status is not None:
        return Failure(1, f"{step} {url}: HTTP {status}", body)
    return Failure(3, f"{step} {url}: {error}")


def upload(args):
    client = TusClient(args.endpoint, headers={"Authorization": f"Bearer {args.token}",
                                               "Vcw-Consent": args.consent})
    filename = os.path.basename(args.file) if args.filename is None else args.filename
    metadata = {}
    if filename:
        metadata["filename"] = filename
    metadata.update(m.split("=", 1) for m in args.metadata)
    with open(args.file, "rb") as stream:
        size = os.fstat(stream.fileno()).st_size
        try:
            # Given a url, the Uploader asks the server for the offset (HEAD) right here.
            uploader = client.uploader(file_stream=stream, url=args.resume_url,
                                       chunk_size=args.chunk_size, metadata=metadata,
                                       retries=0)
        except TusCommunicationError as e:
            raise rejected("HEAD", args.resume_url, e)
        if uploader.url is None:
            try:
                uploader.set_url(uploader.create_url())
            except TusCommunicationError as e:
                raise rejected("POST", args.endpoint, e)
            uploader.offset = 0
        elif uploader.offset > size:
            raise Failure(3, f"HEAD {uploader.url}: the server has {uploader.offset} bytes, "
                          f"more than the file's {size}")
        sent = 0
        while uploader.offset < size and (args.stop_after_chunks is None
                                          or sent < args.stop_after_chunks):
            before = uploader.offset
            try:
                uploader.upload_chunk()
            except TusCommunicationError as e:
                raise rejected("PATCH", uploader.url, e)
            except (TypeError, ValueError):
                # tuspy reads int(Upload-Offset) from the answer: none, or not a number.
                raise Failure(3, f"PATCH {uploader.url}: answer without a valid Upload-Offset")
            if uploader.offset <= before:
                raise Failure(3, f"PATCH {uploader.url}: the server's offset did not move "
                              f"({before} -> {uploader.offset})")
            sent += 1
        return {"url": uploader.url, "offset": uploader.offset,
                "complete": uploader.offset == size}


def main(argv=None):
    args = parse_args(argv)

    def out_of_time(_signum, _frame):
        raise OutOfTime()

    signal.signal(signal.SIGALRM, out_of_time)
    signal.setitimer(signal.ITIMER_REAL, args.timeout)
    try:
        result = upload(args)
    except Failure as f:
        signal.setitimer(signal.ITIMER_REAL, 0)
        print(f"tus_upload: {f.message}", file=sys.stderr)
        if f.body:
            sys.stderr.write(f.body.decode("utf-8", "replace").rstrip("\n") + "\n")
        return f.code
    except OSError as e:
        signal.setitimer(signal.ITIMER_REAL, 0)
        print(f"tus_upload: {e}", file=sys.stderr)
        return 3
    except OutOfTime:
        print(f"tus_upload: no result after {args.timeout:g} s", file=sys.stderr)
        return 3
    signal.setitimer(signal.ITIMER_REAL, 0)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
