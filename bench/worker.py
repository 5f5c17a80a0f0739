"""A benchmark worker process: sets one workload up, then answers commands.

    python -m bench.worker --side ours --kind train --model NAME --batch_size 256 --data_path DIR
    python -m bench.worker --side peer --variant NAME ...   # a peer variant (bench/peer/)

Protocol (one line each way): the worker prints ``READY {json}`` once set up
(its set-up seconds, the units of work it needs before its speed is steady
and, from the peer, the FLOPs per sample of its work);
then for every ``RUN n`` line on stdin it runs ``n`` units of work and prints
``DONE {"seconds": s, "items": k}``; ``QUIT`` or end of input ends it. Errors
print ``ERROR message`` and exit 1. Only protocol lines go to stdout; logs go
to stderr.
"""
import argparse
import json
import sys
import time
import traceback


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--side", choices=("ours", "peer"), required=True)
    parser.add_argument("--kind", choices=("train", "predict", "pipeline"), required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--batch_size", type=int, required=True)
    parser.add_argument("--data_path", required=True)
    parser.add_argument("--threads", type=int, default=0,
                        help="CPU threads of the framework (0: its default / all cores)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="ours: a config key's value instead of the CPU config's (repeatable)")
    parser.add_argument("--variant", default=None,
                        help="the peer's variant (bench/peer/<model>.py VARIANTS; default: its first)")
    args = parser.parse_args(argv)
    protocol = sys.stdout
    sys.stdout = sys.stderr          # anything else printed goes to the log
    try:
        from bench.workload import SIDES
        start = time.perf_counter()
        if args.variant and args.side != "peer":
            raise ValueError("--variant is a peer's")
        if args.set and args.side != "ours":
            raise ValueError("--set is ours")
        extra = {"variant": args.variant} if args.variant else {}
        if args.set:
            extra["settings"] = args.set
        work = SIDES[args.side](args.kind, args.model, args.batch_size, args.data_path,
                                threads=args.threads, **extra)
        ready = {"setup_s": time.perf_counter() - start,
                 "warmup_units": getattr(work, "warmup_units", 0),
                 "flops_per_sample": getattr(work, "flops_per_sample", None)}
        protocol.write("READY " + json.dumps(ready) + "\n")
        protocol.flush()
        for line in sys.stdin:
            words = line.split()
            if not words or words[0] == "QUIT":
                break
            if words[0] != "RUN" or len(words) != 2:
                raise ValueError(f"unknown command {line.strip()!r}")
            seconds, items = work.run(int(words[1]))
            protocol.write("DONE " + json.dumps({"seconds": seconds, "items": items}) + "\n")
            protocol.flush()
    except Exception as exc:          # reported to the driver, which names the case
        traceback.print_exc()
        protocol.write(f"ERROR {type(exc).__name__}: {exc}".replace("\n", " ") + "\n")
        protocol.flush()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
