"""Command line for the built-in target: ``python -m runner.target``.

Runs the server in its own process so it does not share a CPU (or a GIL)
with the load generator; ``runner.target.process.BuiltinTarget`` starts it
this way and learns the port from the ``LISTENING <host> <port>`` line.
With ``--tls-cert`` and ``--tls-key`` it serves https; the parent makes those
files (a throwaway CA's certificate, see ``runner.target.certificate``) so the
child never has to tell anyone which CA to trust.
"""

from __future__ import annotations

import argparse

from runner.target.server import FAULT_KINDS, TargetConfig, run_server, server_tls_context


def build_argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m runner.target",
        description="Serve the runner's built-in HTTP target until SIGTERM/SIGINT.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to bind; 0 picks a free one (default: 0)")
    parser.add_argument("--body-size", type=int, default=1024, help="default body size in bytes (default: 1024)")
    parser.add_argument("--delay-min", type=float, default=0.0, help="smallest random delay in seconds")
    parser.add_argument("--delay-max", type=float, default=0.0, help="largest random delay in seconds; 0 disables delays")
    parser.add_argument("--seed", type=int, default=0, help="seed of the delay and fault sequences (default: 0)")
    parser.add_argument(
        "--fault", action="append", default=[], metavar="KIND=P", type=_fault,
        help="answer ordinary requests with fault KIND with probability P (repeatable; kinds: "
             + ", ".join(FAULT_KINDS) + ")",
    )
    parser.add_argument("--tls-cert", metavar="PEM", help="serve https with this certificate (and chain)")
    parser.add_argument("--tls-key", metavar="PEM", help="the private key of --tls-cert")
    return parser


def _fault(text: str) -> tuple[str, float]:
    kind, sep, probability = text.partition("=")
    try:
        if not sep:
            raise ValueError
        return kind.strip(), float(probability)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected KIND=PROBABILITY, got {text!r}") from None


def main(argv: list[str] | None = None) -> int:
    parser = build_argument_parser()
    args = parser.parse_args(argv)
    try:
        config = TargetConfig(
            body_size=args.body_size,
            delay_min_s=args.delay_min,
            delay_max_s=args.delay_max,
            seed=args.seed,
            faults=tuple(args.fault),
            tls=args.tls_cert is not None,
        )
    except ValueError as error:
        parser.error(str(error))
    if (args.tls_cert is None) != (args.tls_key is None):
        parser.error("--tls-cert and --tls-key go together")
    tls = None
    if args.tls_cert is not None:
        try:
            tls = server_tls_context(args.tls_cert, args.tls_key)
        except (OSError, ValueError) as error:  # ssl.SSLError is an OSError
            parser.error(f"cannot load the certificate: {error}")
    run_server(args.host, args.port, config, announce=True, tls=tls)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
