import json

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from evaluation.replay import advisor_replay
from scheduler.advisors import LlmAdvisor, OfflineAdvisor, advisor_get, advisor_limits
from trading.models import Policy
from trading.services import MARKET_PATTERN


class Command(BaseCommand):
    help = (
        "Replays an advisor over past candles (no look-ahead) and prints the scorecard of what "
        "it would have proposed, scored as proposals are. LLM calls go through the user's budget."
    )

    def add_arguments(self, parser):
        parser.add_argument("--market", required=True)
        parser.add_argument("--days", type=int, default=30)
        parser.add_argument("--advisor", choices=["offline", "llm"], default="offline")
        parser.add_argument("--every", type=int, default=60, help="minutes between snapshots")
        parser.add_argument(
            "--user", help="whose policy limits and LLM budget apply (required for llm)"
        )
        parser.add_argument("--json", dest="json_path", help="also write the result here")

    def handle(self, *args, market, days, advisor, every, user, json_path, **options):
        market = market.strip().upper()
        if not MARKET_PATTERN.match(market):
            raise CommandError("--market must look like BTC-EUR")
        if not 1 <= days <= 365 or not 1 <= every <= 1440:
            raise CommandError("--days must be 1 to 365 and --every 1 to 1440 minutes")
        policy = None
        if user:
            owner = get_user_model().objects.filter(username=user).first()
            policy = Policy.objects.filter(user=owner).first() if owner else None
            if policy is None:
                raise CommandError(f"No user {user!r} with a trading policy.")
        if advisor == "llm":
            chosen = advisor_get()
            if not isinstance(chosen, LlmAdvisor):
                raise CommandError("--advisor llm needs OPENAI_API_KEY in the environment.")
            if policy is None:
                raise CommandError("--advisor llm needs --user: its calls use that budget.")
        else:
            chosen = OfflineAdvisor()
        # Without a user, a new policy's defaults.
        limits = advisor_limits(policy or Policy())
        result = advisor_replay(
            market=market,
            days=days,
            every_minutes=every,
            advisor=chosen,
            limits=limits,
            # The offline rules cost nothing and use no budget.
            policy=policy if advisor == "llm" else None,
        )
        self._print(result)
        if json_path:
            with open(json_path, "w") as output:
                json.dump(_jsonable(result), output, indent=2, default=str)

    def _print(self, result):
        write = self.stdout.write
        write(
            f"replay of {result.advisor} ({result.model}) on {result.market}, "
            f"{result.start:%Y-%m-%d %H:%M} to {result.end:%Y-%m-%d %H:%M} UTC"
        )
        decisions = ", ".join(f"{k} {v}" for k, v in result.decisions.items())
        write(f"decisions: {decisions}; tokens {result.prompt_tokens}+{result.completion_tokens}")
        if result.stopped:
            write(f"stopped early: {result.stopped}")
        header = f"{'':32}{'count':>6}{'hits':>6}{'hit rate':>10}{'mean net':>12}{'Brier':>8}"
        for hours, card in result.scorecards.items():
            write("")
            write(f"horizon {hours} h ({result.unscored[hours]} not yet scorable)")
            write(header)
            write(_line("advisor", card["overall"]))
            for row in card["by_confidence"]:
                if row["count"]:
                    write(_line(f"  confidence {row['confidence']}", row))
            for row in card["baselines"]:
                write(_line(f"  baseline {row['name']}", row))


def _line(label: str, s: dict) -> str:
    def shown(value):
        return "-" if value is None else str(value)

    return (
        f"{label:32}{s['count']:>6}{s['hits']:>6}{shown(s['hit_rate']):>10}"
        f"{shown(s['mean_net_return']):>12}{shown(s['brier']):>8}"
    )


def _jsonable(result) -> dict:
    return {
        "market": result.market,
        "advisor": result.advisor,
        "model": result.model,
        "start": result.start.isoformat(),
        "end": result.end.isoformat(),
        "decisions": result.decisions,
        "proposals": len(result.proposals),
        "stopped": result.stopped,
        "tokens": {"prompt": result.prompt_tokens, "completion": result.completion_tokens},
        "scorecards": result.scorecards,
        "unscored": result.unscored,
    }
