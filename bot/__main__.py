"""Command line: python -m bot {run,chat,classify,demo,report,dashboard,cache} [--config config.yaml]."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from bot.config import Settings, load_settings
from bot.errors import MoodbotError

log = logging.getLogger("bot")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bot", description="moodbot: a sentiment-aware chat bot")
    parser.add_argument("--config", default="config.yaml", help="settings file (default: config.yaml)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="start the bot on the channel named in the config")
    sub.add_parser("chat", help="talk to the bot in the terminal (or pipe one message a line)")
    demo = sub.add_parser("demo", help="play a scripted WeChat conversation on loopback (no WeChat account needed)")
    # the wechaty demo needs the Node gateway of a source checkout: `python -m examples.wechaty_demo` (make demo)
    demo.add_argument("--channel", choices=["wechat_mp", "wecom"], default="wechat_mp",
                      help="wechat_mp / wecom: the official callback server against a fake of WeChat's API")
    report = sub.add_parser("report", help="per-contact mood table and a PNG trend chart")
    report.add_argument("--days", type=int, default=7)
    report.add_argument("--contact", help="one contact (name or id); default: all")
    report.add_argument("--chart", type=Path, default=Path("mood-trend.png"), help="PNG to write")
    dashboard = sub.add_parser("dashboard", help="serve the supervisor dashboard alone, over the configured store")
    dashboard.add_argument("--hash-password", action="store_true",
                           help="read a password from standard input, print a dashboard.password_hash value, exit")
    classify = sub.add_parser("classify", help="classify every message of a .txt, .jsonl or .csv file")
    classify.add_argument("file", type=Path)
    classify.add_argument("-o", "--output", type=Path, help="JSONL output (default: FILE.moods.jsonl)")
    classify.add_argument("--no-progress", action="store_true")
    cache = sub.add_parser("cache", help="list the model cache folder; --prune removes what no config uses")
    cache.add_argument("--prune", action="store_true", help="remove the entries listed as unused")
    cache.add_argument("--also", action="append", default=[], metavar="CONFIG",
                       help="another config sharing the cache folder, whose files are kept too (repeatable; "
                       "MOODBOT__ environment settings apply to it as well)")
    return parser


def _settings(path: str) -> Settings:
    config = Path(path)
    return load_settings(config if config.exists() or path != "config.yaml" else None)


async def _chat(settings: Settings) -> int:
    from bot.app import Application, build_engine
    from bot.channels.console import ConsoleSender, run_console

    sender = ConsoleSender()
    return await run_console(Application(settings, build_engine(settings), sender), sender)


async def _run(settings: Settings) -> int:
    if settings.channel == "console":
        return await _chat(settings)
    if settings.channel in ("wechat_mp", "wecom"):
        from bot.channels.callback import serve

        return await serve(settings)
    from bot.channels.wechaty import run_wechaty

    return await run_wechaty(settings)


def _classify(settings: Settings, args: argparse.Namespace) -> int:
    from bot.batch import classify_file
    from bot.model.engine import ModelEngine
    from bot.model.loader import load_model

    if not args.file.is_file():
        raise MoodbotError(f"{args.file}: no such file")
    if settings.model.backend != "local":
        # classify_file drives the local engine's batches; silently loading a local model instead of
        # the configured server would classify with other weights than the bot's
        raise MoodbotError("`classify` runs the model in this process; this config serves it from "
                           f"{settings.model.base_url}: run it with MOODBOT__MODEL__BACKEND=local")
    target = args.output or args.file.with_name(args.file.name + ".moods.jsonl")
    engine = ModelEngine(load_model(settings.model), settings.model, settings.sentiment)
    summary = classify_file(
        engine, args.file, target, settings.reply.max_input_chars, settings.model.classify_batch_size,
        progress=not args.no_progress,
    )
    print(summary.report())
    print(f"wrote {target}")
    return 0


def _cache(settings: Settings, args: argparse.Namespace) -> int:
    from bot.model.cleanup import folder_of, human, in_use, remove, serves_here, survey

    folder = folder_of(settings)
    if args.prune and not Path(args.config).exists():
        raise MoodbotError(f"--prune keeps what the named configs use, and {args.config} does not exist: "
                           "name the bot's config with --config")
    configs = [settings]
    for path in args.also:
        other = load_settings(path)
        if folder_of(other) != folder:
            print(f"note: {path} caches in {other.model.cache_dir}, not here")
        configs.append(other)
    if args.prune and not any(serves_here(config, folder) for config in configs):
        raise MoodbotError(f"no named config serves a local model from {folder}; nothing would be kept, so "
                           "nothing is pruned")
    try:
        entries = survey(folder, in_use(configs, folder))
    except OSError as exc:
        raise MoodbotError(f"cannot read the cache folder {folder}: {exc}") from exc
    if not entries:
        print(f"{folder}: nothing cached")
        return 0
    print(f"cache folder {folder}")
    for entry in entries:
        print(f"  {entry.state:<8} {human(entry.size):>9}  {entry.path.relative_to(folder)}")
    totals = {state: sum(e.size for e in entries if e.state == state) for state in ("in use", "building", "unused", "other")}
    print("  ".join(f"{state} {human(size)}" for state, size in totals.items() if size or state == "unused"))
    unused = [e for e in entries if e.state == "unused"]
    if not args.prune:
        if unused:
            print(f"`python -m bot cache --prune` removes the {len(unused)} unused entries; name with --also "
                  "every other config that shares this folder")
        return 0
    freed, failed = 0, 0
    for entry in unused:
        why = remove(entry)
        if why is None:
            freed += entry.size
            print(f"removed {entry.path.relative_to(folder)}")
        else:
            failed += 1
            print(f"could not remove {entry.path.relative_to(folder)}: {why}", file=sys.stderr)
    print(f"freed {human(freed)}" + (f"; {failed} entries could not be removed" if failed else ""))
    return 1 if failed else 0


def _report(settings: Settings, args: argparse.Namespace) -> int:
    from bot.clock import SystemClock
    from bot.report import report
    from bot.store import Store

    if args.days < 1:
        raise MoodbotError("--days must be at least 1")
    store = Store.from_settings(settings.store)
    try:
        text, png = report(store, SystemClock(), args.days, args.contact, args.chart)
    except LookupError as exc:
        raise MoodbotError(str(exc)) from None
    finally:
        store.close()
    print(text)
    print(f"chart written to {png}")
    return 0


def _dashboard(settings: Settings, args: argparse.Namespace) -> int:
    if args.hash_password:
        import getpass

        from bot.web.auth import MIN_PASSWORD_CHARS, hash_password

        password = getpass.getpass("password: ") if sys.stdin.isatty() else sys.stdin.readline().rstrip("\n")
        if len(password) < MIN_PASSWORD_CHARS:
            raise MoodbotError(f"use at least {MIN_PASSWORD_CHARS} characters")
        print(hash_password(password))
        return 0
    from bot.web.server import serve_standalone

    return asyncio.run(serve_standalone(settings))


def _check_dashboard(settings: Settings) -> None:
    """Refuse before the model loads, not a minute later, when the dashboard has no password."""
    if settings.dashboard.enabled:
        from bot.web.auth import require_password

        require_password(settings.dashboard)


# libraries whose INFO lines ("Adding job tentatively", HTTP requests, server start-up) are not
# the conversation: shown with -v only
LIBRARIES = ("apscheduler", "wechaty", "wechaty_puppet", "wechaty_puppet_service", "grpclib", "httpx", "httpcore",
             "uvicorn", "urllib3", "asyncio", "jieba", "bm25s", "matplotlib", "PIL")


def configure_logging(verbose: bool) -> None:
    """The bot's own lines at INFO (the conversation, alerts); library chatter only with -v."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for name in (*LIBRARIES, "bot.store"):  # the store's schema migrations are housekeeping too
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.WARNING)
    # the model libraries' progress bars and advice would drown the bot's output, even with -v
    logging.getLogger("transformers").setLevel(logging.INFO if verbose else logging.ERROR)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    configure_logging(args.verbose)
    try:
        settings = _settings(args.config)
        if args.command == "classify":
            return _classify(settings, args)
        if args.command == "report":
            return _report(settings, args)
        if args.command == "dashboard":
            return _dashboard(settings, args)
        if args.command == "cache":
            return _cache(settings, args)
        _check_dashboard(settings)
        if args.command == "demo":
            from bot.demo_official import run_official_demo

            return asyncio.run(run_official_demo(settings, args.channel))
        if args.command == "chat":
            return asyncio.run(_chat(settings))
        return asyncio.run(_run(settings))
    except MoodbotError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return int(getattr(exc, "exit_code", 2))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
