"""The demo corpus: docstrings of the running interpreter's standard library.

Every machine that runs Python has these thousands of real English texts, and queries
like "compress data with gzip" have obvious right answers. Each text starts with the
object's qualified name, so a hit says where it came from.
"""

from __future__ import annotations

import importlib
import inspect
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

MODULES = [
    "abc",
    "argparse",
    "array",
    "ast",
    "asyncio",
    "base64",
    "bisect",
    "builtins",
    "bz2",
    "calendar",
    "cmath",
    "codecs",
    "collections",
    "colorsys",
    "concurrent.futures",
    "configparser",
    "contextlib",
    "copy",
    "csv",
    "ctypes",
    "dataclasses",
    "datetime",
    "decimal",
    "difflib",
    "dis",
    "email",
    "email.utils",
    "enum",
    "filecmp",
    "fileinput",
    "fnmatch",
    "fractions",
    "ftplib",
    "functools",
    "gc",
    "getpass",
    "gettext",
    "glob",
    "graphlib",
    "gzip",
    "hashlib",
    "heapq",
    "hmac",
    "html",
    "html.parser",
    "http.client",
    "http.server",
    "imaplib",
    "importlib",
    "inspect",
    "io",
    "ipaddress",
    "itertools",
    "json",
    "keyword",
    "linecache",
    "locale",
    "logging",
    "lzma",
    "mailbox",
    "math",
    "mimetypes",
    "multiprocessing",
    "operator",
    "os",
    "os.path",
    "pathlib",
    "pickle",
    "platform",
    "plistlib",
    "poplib",
    "pprint",
    "queue",
    "random",
    "re",
    "sched",
    "secrets",
    "select",
    "selectors",
    "shelve",
    "shlex",
    "shutil",
    "signal",
    "smtplib",
    "socket",
    "socketserver",
    "sqlite3",
    "ssl",
    "stat",
    "statistics",
    "string",
    "struct",
    "subprocess",
    "sys",
    "tarfile",
    "tempfile",
    "textwrap",
    "threading",
    "time",
    "timeit",
    "tokenize",
    "traceback",
    "types",
    "typing",
    "unicodedata",
    "unittest",
    "urllib.parse",
    "urllib.request",
    "uuid",
    "warnings",
    "weakref",
    "xml.etree.ElementTree",
    "zipfile",
    "zlib",
    "zoneinfo",
]

#: Characters of each docstring kept: its summary, enough to say what the object does.
MAX_CHARS = 300
_NAMESPACE = uuid.UUID("6f1c3a52-4b8e-4d3a-9a57-7e0c2d7b9f10")


@dataclass(frozen=True)
class Doc:
    qualname: str
    text: str

    @property
    def id(self) -> uuid.UUID:
        """Stable across runs and machines, so loading twice never duplicates a row."""
        return uuid.uuid5(_NAMESPACE, self.qualname)

    @property
    def content(self) -> str:
        return f"{self.qualname}: {self.text}"


def _summary(doc: str) -> str:
    paragraph = doc.strip().split("\n\n")[0]
    text = " ".join(paragraph.split())
    return text[:MAX_CHARS]


def _members(module: object, prefix: str) -> Iterator[tuple[str, object]]:
    for name, value in sorted(vars(module).items()):
        if name.startswith("_"):
            continue
        owner = getattr(value, "__module__", None)
        if (inspect.isclass(value) or inspect.isroutine(value)) and owner in (None, prefix, f"_{prefix}"):
            yield f"{prefix}.{name}", value
            if inspect.isclass(value):
                for attr, member in sorted(vars(value).items()):
                    if not attr.startswith("_") and (inspect.isroutine(member) or isinstance(member, property)):
                        yield f"{prefix}.{name}.{attr}", member


def stdlib_docs() -> list[Doc]:
    """Module, class, function and method docstrings, deduplicated, in a stable order."""
    docs: dict[str, Doc] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for module_name in MODULES:
            try:
                module = importlib.import_module(module_name)
            except ImportError:
                continue
            items = [(module_name, module), *_members(module, module_name)]
            for qualname, obj in items:
                doc = inspect.getdoc(obj)
                if doc and len(doc) >= 20 and qualname not in docs:
                    docs[qualname] = Doc(qualname, _summary(doc))
    return sorted(docs.values(), key=lambda d: d.qualname)


@dataclass(frozen=True)
class Query:
    text: str
    answers: tuple[str, ...]


#: Natural-language questions and the qualified names that answer them.
QUERIES = (
    Query(
        "read a file line by line",
        (
            "io.TextIOBase.readline",
            "io.IOBase.readline",
            "io.IOBase.readlines",
            "linecache.getline",
            "fileinput",
            "fileinput.input",
        ),
    ),
    Query(
        "parse a date from a string",
        (
            "datetime.datetime.strptime",
            "time.strptime",
            "email.utils.parsedate",
            "email.utils.parsedate_to_datetime",
            "datetime.date.fromisoformat",
            "datetime.datetime.fromisoformat",
        ),
    ),
    Query("compress data with gzip", ("gzip.compress", "gzip", "gzip.GzipFile", "gzip.open")),
    Query(
        "pick a random integer in a range",
        ("random.randint", "random.randrange", "random.Random.randint", "random.Random.randrange", "secrets.randbelow"),
    ),
    Query("copy a whole directory tree", ("shutil.copytree",)),
    Query(
        "encode bytes as base64",
        ("base64.b64encode", "base64.standard_b64encode", "base64.encodebytes", "base64.urlsafe_b64encode", "base64"),
    ),
    Query(
        "serialize an object to a JSON string",
        ("json.dumps", "json.dump", "json.JSONEncoder", "json.JSONEncoder.encode"),
    ),
    Query("pause the program for some seconds", ("time.sleep",)),
    Query("list the files in a folder", ("os.listdir", "os.scandir", "glob.glob", "pathlib.Path.iterdir", "os.walk")),
    Query("split a command line into shell words", ("shlex.split", "shlex", "shlex.shlex")),
    Query("square root of a number", ("math.sqrt", "math.isqrt", "cmath.sqrt")),
    Query(
        "parse command line options and arguments",
        ("argparse", "argparse.ArgumentParser", "argparse.ArgumentParser.parse_args"),
    ),
    Query(
        "create a temporary file",
        (
            "tempfile.NamedTemporaryFile",
            "tempfile.TemporaryFile",
            "tempfile.mkstemp",
            "tempfile",
            "tempfile.SpooledTemporaryFile",
        ),
    ),
    Query(
        "send an email through an SMTP server",
        ("smtplib.SMTP.sendmail", "smtplib.SMTP.send_message", "smtplib", "smtplib.SMTP"),
    ),
    Query("compute the average of numbers", ("statistics.mean", "statistics.fmean", "statistics.median")),
)
