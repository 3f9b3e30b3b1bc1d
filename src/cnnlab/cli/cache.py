"""`cnnlab cache`: list what ``$CNNLAB_CACHE`` holds (size per entry) and clean it."""

from __future__ import annotations

import json

from cnnlab.cli.common import add_command

EXAMPLES = """
    cnnlab cache                          # every entry with its size, age and source
    cnnlab cache --json
    cnnlab cache clean                    # extracted archives, decoded arrays, splits
    cnnlab cache clean arrays --dry-run   # what would go
    cnnlab cache clean --all              # also the downloaded datasets"""


def register(subs) -> None:
    c = add_command(subs, "cache", "list and clean $CNNLAB_CACHE (default ~/.cache/cnnlab)",
                    EXAMPLES, cmd_cache,
                    description="List and clean $CNNLAB_CACHE (default ~/.cache/cnnlab):\n"
                                "  datasets/   canonical datasets as downloaded\n"
                                "  extracted/  .tar.gz image folders, extracted and verified\n"
                                "  arrays/     decoded images (uint8), with skipped files\n"
                                "  splits/     remembered split indices\n"
                                "All but datasets/ are rebuilt on demand.")
    c.add_argument("action", nargs="?", default="list", choices=("list", "clean"),
                   help="list (default) or clean")
    c.add_argument("kinds", nargs="*", metavar="KIND",
                   help="clean only these: datasets, extracted, arrays, splits (default: all "
                        "but datasets)")
    c.add_argument("--all", action="store_true", help="clean: also the downloaded datasets")
    c.add_argument("--dry-run", action="store_true", help="clean: only say what would go")
    c.add_argument("--json", action="store_true", help="print JSON")


def cmd_cache(args) -> int:
    from cnnlab.data.cache import (REBUILT, cache_entries, clean_cache, format_entries,
                                   human_bytes)
    from cnnlab.errors import UserError
    from cnnlab.utils import cache_dir

    root = cache_dir()
    if args.action == "list":
        if args.kinds or args.all or args.dry_run:
            raise UserError("cnnlab cache list: takes no KIND, --all or --dry-run (they are "
                            "for `cnnlab cache clean`)")
        entries = cache_entries(root)
        print(json.dumps([e.to_dict() for e in entries], indent=2) if args.json
              else format_entries(entries, root))
        return 0
    removed = clean_cache(args.kinds or REBUILT, everything=args.all, dry_run=args.dry_run,
                          root=root)
    if args.json:
        print(json.dumps([e.to_dict() for e in removed], indent=2))
        return 0
    verb = "would remove" if args.dry_run else "removed"
    for e in removed:
        print(f"{verb} {e.path.relative_to(root)} ({human_bytes(e.bytes)})")
    print(f"{verb} {len(removed)} entries, {human_bytes(sum(e.bytes for e in removed))}, "
          f"from {root}")
    return 0
