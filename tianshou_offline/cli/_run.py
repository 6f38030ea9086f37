"""How every entry point runs a command: typed errors become one ``error:`` line and exit
code 2, Ctrl-C exit code 130, a closed pipe exit code 0; no traceback for bad input."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeAlias

from tianshou_offline.errors import OutputExistsError, SourceNotFoundError, TianshouOfflineError

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
"""What ``add_subparsers`` returns; each command group's ``register`` adds to it."""

Handler = Callable[[argparse.Namespace], int | None]
"""A command handler: parsed arguments in, exit code (None: 0) out."""


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` without abbreviations (``--episode`` is not
    ``--episodes``); the sub-command parsers it makes are of the same class."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)


def parse_arguments(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None
) -> argparse.Namespace:
    """``parser.parse_args(argv)``, except that an unknown option is reported by the
    (sub-)command that was given it, with that command's usage and the closest of its
    options (``record --episode 2``: "did you mean --episodes?"), where argparse prints the
    top-level usage and no suggestion (its ``suggest_on_error`` exists only from Python
    3.14, and only for choices)."""
    tokens = list(sys.argv[1:] if argv is None else argv)
    args, extras = parser.parse_known_args(tokens)
    if extras:
        leaf = parser  # follow the sub-command names in the arguments (a positional of the
        while leaf._subparsers is not None:  # leaf may share the sub-command's dest)
            action = next(
                a for a in leaf._subparsers._group_actions
                if isinstance(a, argparse._SubParsersAction)
            )  # fmt: skip
            at = next((i for i, t in enumerate(tokens) if t in action.choices), None)
            if at is None:
                break
            leaf, tokens = action.choices[tokens[at]], tokens[at + 1 :]
        outer = [k for k in parser._option_string_actions if leaf is not parser]
        leaf.error(unrecognized_message(extras, list(leaf._option_string_actions), outer))
    return args


def unrecognized_message(
    extras: Sequence[str], known: Sequence[str], outer: Sequence[str] = ()
) -> str:
    """``unrecognized arguments: --episode 2 (--episode: did you mean --episodes?)``: the
    closest known option (difflib) to each unknown one; an option of the outer command
    (``outer``, e.g. ``-v``) is said to go before the sub-command."""
    import difflib

    names = [k for k in known if k.startswith("-")]
    hints = []
    for token in extras:
        flag = token.split("=", 1)[0]
        if not flag.startswith("-"):
            continue
        if flag in outer and flag not in ("-h", "--help"):
            hints.append(
                f"{flag}: an option of tianshou-offline itself; give it before the command"
            )
            continue
        close = difflib.get_close_matches(flag, names, n=1, cutoff=0.6)
        if close:
            hints.append(f"{flag}: did you mean {close[0]}?")
    hint = f" ({'; '.join(hints)})" if hints else ""
    return f"unrecognized arguments: {' '.join(extras)}{hint}"


class UsageError(TianshouOfflineError):
    """Invalid combination of command-line options."""


def positive_int(text: str) -> int:
    """An argparse ``type``: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, found {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, found {value}")
    return value


def check_output(
    path: str | os.PathLike[str],
    *,
    flag: str,
    overwrite: bool | None = False,
    directory: bool = False,
    parents: bool = False,
    exists_hint: str = "pass --overwrite to replace it",
) -> Path:
    """Check an output path before any heavy work, so that a bad one is one ``error:`` line in
    a fraction of a second: its folder exists (``parents``: its nearest existing ancestor, the
    command creates the rest) and is writable (a file is created and removed there to find
    out, which is what counts, also for root and read-only mounts), the path is not a
    directory (``directory``: not a file), and an existing one is only accepted with
    ``overwrite`` (None: the command decides later, e.g. ``record --append`` or a directory
    that is reused).

    :param flag: the option that named the path, e.g. ``"--plot"`` (in messages).
    :param exists_hint: what to do about an existing output (the command's flags).
    :raises UsageError: a missing or unwritable folder, a directory for a file or vice versa.
    :raises OutputExistsError: ``path`` exists and ``overwrite`` is False.
    """
    p = Path(path)
    what = "a directory" if directory else "a file"
    if p.is_dir() and not directory:
        raise UsageError(f"{flag} {p}: is a directory; expected {what} path to write")
    if p.exists() and not p.is_dir() and directory:
        raise UsageError(f"{flag} {p}: is a file; expected {what} path to write")
    if p.exists() and overwrite is False:
        raise OutputExistsError(f"{flag} {p}: output exists; {exists_hint}")
    if directory and p.is_dir():
        folder = p
    else:
        folder = p.absolute().parent
        while parents and not folder.exists() and folder != folder.parent:
            folder = folder.parent
        if not folder.exists():
            raise UsageError(f"{flag} {p}: folder {folder} does not exist; create it first")
        if not folder.is_dir():
            raise UsageError(f"{flag} {p}: {folder} is a file, not a folder")
    probe = folder / f".tianshou_offline_probe_{os.getpid()}"
    try:
        os.close(os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except OSError as e:
        raise UsageError(f"{flag} {p}: cannot write in folder {folder} ({e.strerror})") from None
    probe.unlink(missing_ok=True)
    return p


def check_input(path: str | os.PathLike[str], *, what: str) -> Path:
    """Check that an input file exists (before heavy work); ``what`` names what the command
    expects there, e.g. ``"a buffer file (--data)"``.

    :raises SourceNotFoundError: no such file, or a directory.
    """
    p = Path(path)
    if not p.exists():
        raise SourceNotFoundError(f"{p}: no such file; expected {what}")
    if p.is_dir():
        raise SourceNotFoundError(f"{p}: is a directory; expected {what}")
    return p


CLEAN_HELP = (
    "remove the temporary files and directories that killed runs of this command left beside "
    "its output(s), list them (and those of runs still going, which are kept), and exit "
    "without doing anything else; a normal run removes them too, with a warning"
)


def add_clean_argument(parser: argparse.ArgumentParser) -> None:
    """``--clean`` (see :data:`CLEAN_HELP`) for a command that writes outputs."""
    parser.add_argument("--clean", action="store_true", help=CLEAN_HELP)


def clean_outputs(outputs: Sequence[Path]) -> int:
    """``--clean``: remove the stale temporaries beside each of ``outputs`` (temporaries of
    processes that no longer run; see :mod:`tianshou_offline.data.atomic`), print a line per
    temporary found and a summary; exit code 0."""
    from tianshou_offline.data.atomic import find_temps, format_size, remove_temp

    removed = kept = 0
    freed = 0
    for out in outputs:
        for t in find_temps(out):
            name = f"{t.path}{'/' if t.is_dir else ''}"
            if t.running:
                print(f"kept {name}: process {t.pid} still runs ({format_size(t.size)})")
                kept += 1
                continue
            remove_temp(t.path)
            size = format_size(t.size)
            print(f"removed {name}: left by process {t.pid}, which no longer runs ({size})")
            removed += 1
            freed += t.size
    where = str(outputs[0]) if len(outputs) == 1 else f"{len(outputs)} outputs"
    print(
        f"{removed} temporaries of killed runs removed ({format_size(freed)}), {kept} of running "
        f"ones kept, beside {where}"
    )
    return 0


def configure_logging(verbose: bool) -> None:
    """Log records at INFO with ``-v``/``--verbose``, else warnings only, to stderr."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )


def file_error(e: OSError) -> str:
    """One line for an operating-system error about a path (a folder that vanished, a full
    disk, permissions the up-front checks could not foresee): ``PATH: reason``."""
    where = f"{e.filename} -> {e.filename2}" if e.filename2 else str(e.filename)
    return f"{where}: {e.strerror or type(e).__name__}"


def run_command(func: Handler, args: argparse.Namespace) -> int:
    """Run a command handler the way every entry point does (``tianshou-offline`` and the
    ``converters/*.py`` scripts): a typed error, or an operating-system error about a path,
    prints ``error: <message>`` to stderr and returns 2, no traceback; Ctrl-C returns 130; a
    closed output pipe returns 0."""
    try:
        code = func(args)
    except TianshouOfflineError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        if e.filename is None:  # not about a path the user gave: a bug, keep its traceback
            raise
        print(f"error: {file_error(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into e.g. `head`
        sys.stderr.close()
        return 0
    return int(code or 0)


def run_script(
    add_arguments: Callable[[argparse.ArgumentParser], None],
    func: Handler,
    argv: Sequence[str] | None,
    *,
    prog: str,
    description: str,
) -> int:
    """Entry point of a stand-alone script (``converters/*.py``): builds a parser from
    ``add_arguments`` (plus ``-v``/``--verbose``) and runs ``func`` as ``tianshou-offline``
    does (:func:`run_command`)."""
    parser = ArgumentParser(prog=prog, description=description)
    add_arguments(parser)
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    args = parse_arguments(parser, argv)
    configure_logging(args.verbose)
    return run_command(func, args)
