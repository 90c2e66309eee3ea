"""Call rating for the cloud-phone service: pure, no I/O, no asyncio, no clock.

Time is always an argument. The one file this package reads is its own shipped tariff
(`default_tariffs()`, package data). The CDR pipeline (queue, batch writer, spool, store,
API) is built on top of it elsewhere; `billing` may import `routing` and
`provisioning.model`, and nothing in those may import `billing`.

- `classes`: direction, rating class and toll-free caller kind of a call; destinations are
  classified by `routing.dialled` (one reader of the numbering plan for routing and rating).
- `money`: exact amounts in tenths of a yen; statement rounding.
- `tariff` / `tariff_file` / `tariffs.toml`: the versioned, validated tariff table.
- `rating`: `rate_call(RatingInput, TariffTable) -> RatedCall`.
- `month`: billing months (26th to 25th, tenant time zone).
- `fair_use`: the 10-minute plan's ~30-calls-a-day flag (and its live watch, `FairUseWatch`).
- `statement`: a tenant's month, per ID, per number, per category (`StatementAccumulator`
  folds rows one at a time).
- `cdr`: the sans-IO tracker the proxy drives to build each call's `CallRecord` (CDR), and
  the exact proxy events that feed it.
- `cdr_rating`: a CDR rated (billing month, tariff version, charge) and read back.
- `cdr_codec`: a CDR as one JSON line (the CDR writer's spool).
- `statement_doc`: statements from stored CDRs for the REST API (`CdrStatements`, injected
  into provisioning by switch/node.py).

Money. Prices and charges are integers of tenths of a yen (`Money`), never floats: ¥17.5 per
minute needs one decimal and no tariff needs more. A call's charge is exact (3 min to a
mobile from a desk phone is ¥52.5); statement totals are exact sums; only the amount the
tenant pays for the month is rounded to whole yen, once, by the tariff's
`statement_rounding` (shipped: down, 切り捨て). Prices are before consumption tax.

DISAGREEMENTS between the sources (digest = ../shared/docs/service-rules.md; guide =
seeds/001_…, the user guide; Q&A = seeds/000_…, customer questions) and what was chosen:

1. Desk phone/ATA prices beyond landlines and mobiles. Digest and guide give only
   [固定電話宛] ¥8/3 min and [携帯電話宛] ¥17.5/min. Chosen (data, `tariffs.toml`):
   050 → ¥17.5/min, because the guide's forwarding tariff prices "050番号や携帯電話番号"
   together at ¥17.5/min; 0570 → ¥20/30 s and 104 → ¥265 per call, the only prices the
   guide gives for them (stated under the 10-minute plan, not per device); 0120/0800 → free
   (the called party pays); 020/0180/0990 ("other") → ¥20/30 s like 0570.
2. "Other" destinations and the plan. The seeds never mention 020/0180/0990; the guide
   excludes "ナビダイヤル(0570など)" — 0570 *and the like* — from the plan. Chosen: "other"
   is not covered by the plan, with 0570 and 104.
3. Toll-free numbers "incoming only" (digest). The guide: outgoing calls are possible with
   the 特定番号通知サービス and then cost "IDでの発信と同様" (as any call of the ID). Chosen:
   rating never looks at the presented number, so such a call is rated like any other;
   routing still refuses to present a toll-free number (unchanged).
4. When toll-free charges are billed. The guide: "料金の確定、ご請求は、ご利用月の翌々月以降"
   (settled and invoiced two months after use, or later); the digest is silent; the brief
   says a call is billed in the month it started. Chosen: a toll-free inbound call is rated
   and put in the statement of the billing month in which it started (the usage month);
   invoicing it later is the invoice's business (flagged to the lead).
5. Billing month name. Digest: "closes on the 25th". Guide: "1月度(1月20日~1月25日)",
   "2月度(1月26日~2月25日)". Chosen: the label is the month of the closing 25th (2024-02 is
   2024-01-26 00:00 to 2024-02-26 00:00 local). The Q&A's payment day ("本申し込み完了日から
   1ヶ月ごと") differs from the closing day and does not concern rating.
6. Fair use. Digest: "~30 calls a day may lose the plan". Guide: the operator may then
   cancel the plan and charge the normal rate "通話開始時点より" (from the start of the
   calls). Chosen: `heavy_callers` flags an ID at >= 30 outgoing call attempts on a local
   day (threshold is data); cancelling and re-rating with has_plan=False is an operator
   decision for the pipeline, never automatic.
7. Units after the free 10 minutes. Digest: "beyond that ¥20 per 30 s"; guide: "10分超過時は
   20円/30秒". Neither says where the 30-s units start. Chosen: from the end of the free time
   (10:01 is one unit, ¥20). With 600 s free and 30-s units this is the same as counting from
   the start of the call; it differs only if an operator sets a free time that is not a
   multiple of the unit.
8. Unanswered calls to 104. "1回/265円" (per call). Chosen: only answered calls are charged
   (billable seconds 0 → ¥0), as for every other class.
9. Rounding of ¥17.5 and of totals. The seeds say nothing. Chosen as in "Money" above.
10. Monthly fees in the Q&A that contradict the guide (not rated here; listed so nobody
    takes them from the Q&A): basic ID ¥980 (Q&A, old service) vs ¥700 (guide, 2021/6/26~);
    desk phone ¥12,000 (Q&A) vs ¥11,500 (guide, GRP2604); ATA ¥9,800 (Q&A) vs ¥9,300
    (guide). The per-ID ¥1,000 10-minute plan agrees everywhere; the Q&A's "新方式" keeps
    the plan on the ID ("10分かけ放題はIDに紐づいたまま"), as the digest says.
11. Toll-free caller kinds. The guide's "携帯PHS" is one kind (mobile, PHS included); a
    payphone cannot be told from its number, so `caller_kind_for` uses the carrier's
    calling-party category (tel URI cpc, RFC 4694) and charges 050, withheld and unknown
    callers at the landline rate.
"""

from .cdr import CallRecords, CallStart, describe, media_outcome
from .cdr_rating import rate_record
from .classes import (
    DESTINATION_CLASSES,
    REFUSED_CLASSES,
    CallClass,
    CallerKind,
    Direction,
    caller_kind_for,
    destination_class,
)
from .errors import BillingError, RatingError, StatementError, TariffError
from .fair_use import FairUseWatch, heavy_callers, outgoing_calls_per_day
from .money import ZERO, Money, Rounding
from .month import (
    CLOSING_DAY,
    BillingMonth,
    billing_month,
    billing_month_from_label,
    billing_month_of,
)
from .rating import RatedCall, RatingInput, rate_call
from .statement import (
    Breakdown,
    Category,
    Statement,
    StatementAccumulator,
    StatementRow,
    Totals,
    build_statement,
)
from .statement_doc import CdrStatements
from .tariff import FreeCallPlan, Rate, TariffTable, TariffVersion
from .tariff_file import default_tariffs, parse_tariffs, parse_tariffs_toml

__all__ = [
    "CLOSING_DAY",
    "DESTINATION_CLASSES",
    "REFUSED_CLASSES",
    "ZERO",
    "BillingError",
    "BillingMonth",
    "Breakdown",
    "CallClass",
    "CallRecords",
    "CallStart",
    "CallerKind",
    "Category",
    "CdrStatements",
    "Direction",
    "FairUseWatch",
    "FreeCallPlan",
    "Money",
    "Rate",
    "RatedCall",
    "RatingError",
    "RatingInput",
    "Rounding",
    "Statement",
    "StatementAccumulator",
    "StatementError",
    "StatementRow",
    "TariffError",
    "TariffTable",
    "TariffVersion",
    "Totals",
    "billing_month",
    "billing_month_from_label",
    "billing_month_of",
    "build_statement",
    "caller_kind_for",
    "default_tariffs",
    "describe",
    "destination_class",
    "heavy_callers",
    "media_outcome",
    "outgoing_calls_per_day",
    "parse_tariffs",
    "parse_tariffs_toml",
    "rate_call",
    "rate_record",
]
