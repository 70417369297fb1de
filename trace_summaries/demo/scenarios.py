"""What the seeded applications talk about: system prompts, tools, scripted conversations, errors, feedback.

The content is provider-neutral (``messages.py`` turns it into OpenAI or Anthropic shapes) and coherent: an
agent *play* is a request, the tool calls a competent agent would make for it with results that fit, and an
answer that follows from those results. Summaries of seeded traces can then be checked by a reader ("looked
up the order, refund over the limit, escalated"), which random tool calls would not allow. The app types
differ on purpose: a support agent, a code assistant, a SQL analyst, a RAG QA bot, an extraction job, a
writing assistant and a nightly classification batch. Everything here is constant data; randomness lives in
``traces.py``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Tool:
    """A tool as the application declares it: name, description and a JSON schema for its arguments."""

    name: str
    description: str
    parameters: dict[str, Any]
    # Tools that call another service get a nested span of their own for that call (third nesting level).
    backend_call: str | None = None


@dataclass(frozen=True, slots=True)
class ToolUse:
    """One call the agent makes in a play, and what the tool returns."""

    tool: str
    arguments: dict[str, Any]
    result: Any


@dataclass(frozen=True, slots=True)
class Play:
    """A scripted agent conversation: each step is one model turn issuing one or more (parallel) calls.

    ``earlier`` is an optional first exchange (user message, assistant reply); when used, the trace is a
    later turn of a multi-turn conversation and the request is the user's follow-up.
    """

    request: str
    steps: tuple[tuple[ToolUse, ...], ...]
    answer: str
    earlier: tuple[str, str] | None = None
    image: bool = False


@dataclass(frozen=True, slots=True)
class Exchange:
    """One user message and the reply a correct model gives, for the non-agent apps."""

    user: str
    assistant: str


@dataclass(frozen=True, slots=True)
class Scenario:
    """One seeded application: its identity, prompt, tools and the conversations it has."""

    key: str
    app_name: str
    system_prompt: str
    # Share of the app's traces sent to Anthropic; the rest go to OpenAI.
    anthropic_share: float
    tools: tuple[Tool, ...] = ()
    plays: tuple[Play, ...] = ()
    # Single-exchange apps pick one; chat apps run a dialog of several in order.
    exchanges: tuple[Exchange, ...] = ()
    dialogs: tuple[tuple[Exchange, ...], ...] = ()


@dataclass(frozen=True, slots=True)
class QA:
    """A RAG question, its grounded answer, and the passage (index in ``PASSAGES``) that answers it."""

    question: str
    answer: str
    passage: int


def _schema(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": required}


_STR = {"type": "string"}
_INT = {"type": "integer"}
_NUM = {"type": "number"}

# --- support agent ---------------------------------------------------------------------------------------

_CUSTOMER_MARIA = ToolUse(
    "get_customer",
    {"email": "maria.lopez@example.com"},
    {"customer_id": "cus_8812", "plan": "Pro", "status": "active", "account_age_days": 412},
)
_CUSTOMER_CHEN = ToolUse(
    "get_customer",
    {"email": "j.chen@example.org"},
    {"customer_id": "cus_1907", "plan": "Team", "status": "active", "account_age_days": 88},
)
_ORDER_DRIVE = ToolUse(
    "lookup_order",
    {"order_id": "ORD-48213"},
    {
        "order_id": "ORD-48213",
        "item": "2TB external drive",
        "amount_usd": 119.0,
        "status": "delivered",
        "days_ago": 12,
    },
)
_ORDER_DOUBLE = ToolUse(
    "lookup_order",
    {"order_id": "ORD-50771"},
    {
        "order_id": "ORD-50771",
        "item": "Team plan, annual",
        "amount_usd": 349.0,
        "status": "charged_twice",
        "days_ago": 3,
    },
)
_ESCALATE_DOUBLE = ToolUse(
    "escalate_to_human",
    {
        "summary": "Customer charged twice ($349) for ORD-50771; above self-service refund limit",
        "priority": "urgent",
    },
    {"ticket_id": "T-99231", "queue": "billing", "expected_wait_minutes": 25},
)

SUPPORT = Scenario(
    key="support_bot",
    app_name="support-agent",
    anthropic_share=0.4,
    system_prompt=(
        "You are Nimbus, the customer support assistant for Acme Cloud Storage. Be concise, friendly and "
        "accurate. Always verify the customer's identity with get_customer before discussing an account. "
        "Refunds above $200 or older than 30 days must be escalated to a human agent. Never promise "
        "delivery dates you cannot see in the order record. If a tool fails, apologise and try once more "
        "before escalating. Answer in the customer's language."
    ),
    tools=(
        Tool(
            "get_customer",
            "Look up a customer by email address. Returns plan, status and account age.",
            _schema({"email": {**_STR, "description": "Customer email"}}, ["email"]),
            backend_call="GET /v2/customers",
        ),
        Tool(
            "lookup_order",
            "Fetch an order with its items, amount, payment state and shipping status.",
            _schema({"order_id": {**_STR, "description": "Order id like ORD-12345"}}, ["order_id"]),
            backend_call="GET /v2/orders",
        ),
        Tool(
            "create_refund",
            "Refund part or all of an order. Only for amounts up to $200 within 30 days.",
            _schema(
                {
                    "order_id": _STR,
                    "amount_usd": _NUM,
                    "reason": {**_STR, "enum": ["duplicate", "defect", "other"]},
                },
                ["order_id", "amount_usd", "reason"],
            ),
            backend_call="POST /v2/refunds",
        ),
        Tool(
            "search_help_center",
            "Search help-center articles. Returns titles and short excerpts.",
            _schema({"query": _STR, "limit": {**_INT, "default": 3}}, ["query"]),
        ),
        Tool(
            "escalate_to_human",
            "Hand the conversation to a human agent with a summary and a priority.",
            _schema(
                {"summary": _STR, "priority": {**_STR, "enum": ["low", "normal", "urgent"]}},
                ["summary", "priority"],
            ),
        ),
    ),
    plays=(
        Play(
            request="The external drive I ordered (ORD-48213) arrived broken. Can I get a refund? "
            "My email is maria.lopez@example.com",
            steps=(
                (_CUSTOMER_MARIA, _ORDER_DRIVE),
                (
                    ToolUse(
                        "create_refund",
                        {"order_id": "ORD-48213", "amount_usd": 119.0, "reason": "defect"},
                        {"refund_id": "re_5521", "status": "pending", "eta_days": 5},
                    ),
                ),
            ),
            answer="I'm sorry the drive arrived broken! I've refunded the full $119.00 for order ORD-48213 "
            "(refund re_5521). It should reach your card within 5 business days.",
        ),
        Play(
            request="Hi, I was charged twice for order ORD-50771 and I need my money back. "
            "My email is j.chen@example.org",
            steps=(
                (_CUSTOMER_CHEN,),
                (_ORDER_DOUBLE,),
                (
                    ToolUse(
                        "create_refund",
                        {"order_id": "ORD-50771", "amount_usd": 349.0, "reason": "duplicate"},
                        {"error": "amount exceeds self-service refund limit of $200"},
                    ),
                ),
                (_ESCALATE_DOUBLE,),
            ),
            answer="I can see the duplicate $349 charge on ORD-50771. It's above what I can refund myself, "
            "so I've escalated it to our billing team as urgent (ticket T-99231); they usually reply within "
            "30 minutes.",
        ),
        Play(
            earlier=(
                "I've contacted you THREE times about a double charge and nobody has fixed it. "
                "This is ridiculous.",
                "I'm really sorry about that. Could you give me the order id so I can look at it right away?",
            ),
            request="ORD-50771. Please just fix it.",
            steps=((_ORDER_DOUBLE,), (_ESCALATE_DOUBLE,)),
            answer="I completely understand your frustration. The double charge on ORD-50771 is confirmed "
            "and I've escalated it as urgent to billing (ticket T-99231), who can issue refunds of this "
            "size.",
        ),
        Play(
            request="My files have been stuck syncing at 99% since yesterday. What can I do?",
            steps=(
                (
                    ToolUse(
                        "search_help_center",
                        {"query": "sync stuck at 99%"},
                        [{"title": "Sync stops before finishing", "excerpt": "Usually a stale local cache."}],
                    ),
                ),
                (
                    ToolUse(
                        "search_help_center",
                        {"query": "clear local cache desktop app", "limit": 1},
                        [
                            {
                                "title": "Clear the local cache",
                                "excerpt": "Quit the app, then Settings > Advanced "
                                "> Clear cache. Your files are not deleted.",
                            }
                        ],
                    ),
                ),
            ),
            answer="Sync stuck at 99% is usually a stale local cache. Quit the app, clear the cache under "
            "Settings > Advanced > Clear cache (your files stay safe), and restart it. Let me know if it's "
            "still stuck.",
        ),
        Play(
            request="Here's a screenshot of the error I get when I try to upload a video. "
            "My account is li.wei@example.com",
            image=True,
            steps=(
                (
                    ToolUse(
                        "get_customer",
                        {"email": "li.wei@example.com"},
                        {
                            "customer_id": "cus_3350",
                            "plan": "Free",
                            "status": "active",
                            "account_age_days": 40,
                        },
                    ),
                ),
                (
                    ToolUse(
                        "search_help_center",
                        {"query": "upload error 413 file too large"},
                        [{"title": "Upload limits by plan", "excerpt": "Free: 2 GB per file. Pro: 50 GB."}],
                    ),
                ),
            ),
            answer="The screenshot shows error 413: the video is larger than the 2 GB per-file limit of your "
            "Free plan. Compress it, or upgrade to Pro for files up to 50 GB.",
        ),
        Play(
            request="Hola, ¿pueden ayudarme a cancelar mi suscripción? Mi correo es sam@example.net",
            steps=(
                (ToolUse("get_customer", {"email": "sam@example.net"}, {"error": "customer not found"}),),
                (
                    ToolUse(
                        "search_help_center",
                        {"query": "cancelar suscripción", "limit": 2},
                        [
                            {
                                "title": "Cancel your subscription",
                                "excerpt": "Settings > Billing > Cancel plan.",
                            }
                        ],
                    ),
                ),
            ),
            answer="No encuentro ninguna cuenta con sam@example.net. ¿Podrías confirmar el correo con el que "
            "te registraste? Mientras tanto: puedes cancelar en Ajustes > Facturación > Cancelar plan.",
        ),
    ),
)

# --- code assistant --------------------------------------------------------------------------------------

_INVOICE_PY = (
    "1: from decimal import Decimal\n2: \n3: def total(items):\n4:     return sum(i.price for i in items)\n"
    "5: \n6: def apply_discount(total, pct):\n7:     return total * pct / 100\n"
)
_FIX_DIFF = (
    "--- a/src/billing/invoice.py\n+++ b/src/billing/invoice.py\n@@ -6,2 +6,2 @@\n"
    " def apply_discount(total, pct):\n-    return total * pct / 100\n+    return total * (100 - pct) / 100\n"
)
_READ_INVOICE = ToolUse("read_file", {"path": "src/billing/invoice.py"}, _INVOICE_PY)
_TESTS_FAIL = ToolUse(
    "run_tests",
    {"target": "tests/test_invoice.py"},
    "FAILED tests/test_invoice.py::test_discount - assert 10.0 == 90\n1 failed, 6 passed in 0.21s",
)
_TESTS_PASS = ToolUse("run_tests", {"target": "tests/"}, "142 passed in 8.93s")
_APPLY_FIX = ToolUse("apply_patch", {"diff": _FIX_DIFF}, {"applied": True, "files_changed": 1})

CODE = Scenario(
    key="code_assistant",
    app_name="code-assistant",
    anthropic_share=0.75,
    system_prompt=(
        "You are a senior software engineer pairing with the user inside their repository. Read the "
        "relevant files before proposing changes, keep diffs minimal, and run the tests after every change. "
        "Explain the root cause in one or two sentences. Never modify files outside the repository root."
    ),
    tools=(
        Tool(
            "read_file",
            "Read a file of the repository. Returns its content with line numbers.",
            _schema({"path": _STR, "start_line": _INT, "end_line": _INT}, ["path"]),
        ),
        Tool(
            "search_code",
            "Search the repository with a regular expression. Returns matching lines.",
            _schema({"pattern": _STR, "path_glob": {**_STR, "default": "**/*"}}, ["pattern"]),
        ),
        Tool(
            "run_tests",
            "Run the test suite or a subset. Returns the pytest summary and failures.",
            _schema({"target": {**_STR, "default": "tests/"}}, []),
            backend_call="sandbox.exec pytest",
        ),
        Tool(
            "apply_patch",
            "Apply a unified diff to the working tree. Fails if the diff does not apply cleanly.",
            _schema({"diff": _STR}, ["diff"]),
            backend_call="sandbox.exec git apply",
        ),
    ),
    plays=(
        Play(
            request="test_discount is failing after the refactor, can you find out why and fix it?",
            steps=(
                (_TESTS_FAIL,),
                (
                    _READ_INVOICE,
                    ToolUse(
                        "read_file",
                        {"path": "tests/test_invoice.py"},
                        "1: from billing.invoice import apply_discount\n2: \n3: def test_discount():\n"
                        "4:     assert apply_discount(100, 10) == 90\n",
                    ),
                ),
                (_APPLY_FIX,),
                (_TESTS_PASS,),
            ),
            answer="Root cause: apply_discount returned the discount amount instead of the discounted total. "
            "I changed it to `total * (100 - pct) / 100`; all 142 tests pass now.",
        ),
        Play(
            request="Where do we call apply_discount, and is it ever called with a fraction instead of a "
            "percentage?",
            steps=(
                (
                    ToolUse(
                        "search_code",
                        {"pattern": "apply_discount\\("},
                        "src/billing/invoice.py:6\nsrc/checkout/cart.py:41\ntests/test_invoice.py:4",
                    ),
                ),
                (
                    ToolUse(
                        "read_file",
                        {"path": "src/checkout/cart.py", "start_line": 35, "end_line": 45},
                        "41:     subtotal = apply_discount(subtotal, coupon.percent_off)\n",
                    ),
                ),
            ),
            answer="apply_discount is called in src/checkout/cart.py:41 with coupon.percent_off, a "
            "percentage, and in the tests. Nothing passes a fraction.",
        ),
        Play(
            earlier=(
                "The CI is red again. Please look at it.",
                "The failing job is the unit tests: tests/test_invoice.py::test_discount. Want me to fix it?",
            ),
            request="Yes please, and make sure nothing else breaks.",
            steps=((_READ_INVOICE,), (_APPLY_FIX,), (_TESTS_PASS,)),
            answer="Fixed: apply_discount now returns the discounted total. "
            "The full suite (142 tests) passes.",
        ),
    ),
)

# --- SQL analyst -----------------------------------------------------------------------------------------

_LIST_TABLES = ToolUse(
    "list_tables", {}, [{"table": "orders", "rows": 1204332}, {"table": "customers", "rows": 80441}]
)
_DESCRIBE_ORDERS = ToolUse(
    "describe_table",
    {"table": "orders"},
    [
        {"name": "order_id", "type": "String"},
        {"name": "customer_id", "type": "String"},
        {"name": "amount_usd", "type": "Decimal(12,2)"},
        {"name": "created_at", "type": "DateTime"},
        {"name": "country", "type": "LowCardinality(String)"},
    ],
)

SQL = Scenario(
    key="sql_analyst",
    app_name="sql-analyst",
    anthropic_share=0.2,
    system_prompt=(
        "You are a data analyst with read-only access to the company's warehouse. Translate questions into "
        "ClickHouse SQL, inspect schemas before querying, never select more than 1000 rows, and explain "
        "the result in plain language with the key numbers."
    ),
    tools=(
        Tool("list_tables", "List the tables of the analytics database with row counts.", _schema({}, [])),
        Tool("describe_table", "Columns and types of one table.", _schema({"table": _STR}, ["table"])),
        Tool(
            "run_sql",
            "Run a read-only SQL query and return up to 1000 rows as JSON.",
            _schema({"query": _STR}, ["query"]),
            backend_call="clickhouse query",
        ),
    ),
    plays=(
        Play(
            request="Which countries brought in the most revenue in the last 30 days?",
            steps=(
                (_LIST_TABLES,),
                (_DESCRIBE_ORDERS,),
                (
                    ToolUse(
                        "run_sql",
                        {
                            "query": "SELECT country, sum(amount_usd) AS revenue FROM orders "
                            "WHERE created_at >= now() - INTERVAL 30 DAY "
                            "GROUP BY country ORDER BY revenue DESC LIMIT 5"
                        },
                        [
                            {"country": "US", "revenue": 1830221.5},
                            {"country": "DE", "revenue": 640118.0},
                            {"country": "GB", "revenue": 511930.25},
                        ],
                    ),
                ),
            ),
            answer="Over the last 30 days the US led with $1.83M in revenue, followed by Germany ($640K) and "
            "the UK ($512K).",
        ),
        Play(
            request="How many orders did we get yesterday compared to the same day last week?",
            steps=(
                (
                    ToolUse(
                        "run_sql",
                        {"query": "SELECT count() FROM orderz WHERE toDate(created_at) = yesterday()"},
                        {"error": "Code: 60. DB::Exception: Table analytics.orderz does not exist."},
                    ),
                ),
                (_DESCRIBE_ORDERS,),
                (
                    ToolUse(
                        "run_sql",
                        {
                            "query": "SELECT toDate(created_at) AS day, count() FROM orders WHERE day IN "
                            "(yesterday(), yesterday() - 7) GROUP BY day"
                        },
                        [{"day": "yesterday", "count": 4112}, {"day": "a week before", "count": 3879}],
                    ),
                ),
            ),
            answer="Yesterday we had 4,112 orders, 6% more than the same day last week (3,879).",
        ),
        Play(
            earlier=(
                "What's our average order value?",
                "Over all time it's $86.40. Do you want it for a specific cohort?",
            ),
            request="Yes, for customers who signed up this year.",
            steps=(
                (_LIST_TABLES,),
                (
                    _DESCRIBE_ORDERS,
                    ToolUse(
                        "describe_table",
                        {"table": "customers"},
                        [
                            {"name": "customer_id", "type": "String"},
                            {"name": "signed_up_at", "type": "DateTime"},
                        ],
                    ),
                ),
                (
                    ToolUse(
                        "run_sql",
                        {
                            "query": "SELECT avg(o.amount_usd) FROM orders o "
                            "JOIN customers c USING customer_id "
                            "WHERE toYear(c.signed_up_at) = toYear(now())"
                        },
                        [{"avg_amount_usd": 104.15}],
                    ),
                ),
            ),
            answer="Customers who signed up this year spend $104.15 per order on average, about 20% above "
            "the overall average of $86.40.",
        ),
    ),
)

# --- RAG QA ----------------------------------------------------------------------------------------------

PASSAGES: tuple[str, ...] = (
    "Parental leave (DE): 14 weeks at full pay in addition to statutory Elternzeit. Notify HR 7 weeks ahead.",
    "Hardware requests go through the IT portal (Hardware > New device). Manager approval required.",
    "Travel policy: co-working day passes are reimbursable up to €30/day with a receipt.",
    "On-call: weekend shifts are compensated with a flat €150 per day plus time off in lieu.",
    "Security: production access requests are reviewed weekly; see the access-control runbook.",
    "Expense reports must be filed within 60 days of the purchase date.",
)
RAG_QA: tuple[QA, ...] = (
    QA(
        "How many days of parental leave do we get in Germany?",
        "Employees in Germany get 14 weeks of fully paid parental leave on top of statutory Elternzeit [1].",
        0,
    ),
    QA(
        "What's the process for requesting a new laptop?",
        "Request it in the IT portal under Hardware > New device; your manager has to approve it [1].",
        1,
    ),
    QA(
        "Can I expense a co-working space when travelling?",
        "Yes, co-working day passes are reimbursable up to €30 per day with a receipt [1].",
        2,
    ),
    QA(
        "What is the on-call compensation for weekends?",
        "Weekend on-call pays €150 per day plus time off [1].",
        3,
    ),
    QA(
        "Who approves production database access?",
        "I don't know: the context only says requests are reviewed weekly [1], not who approves them. "
        "Try asking in #infra-help.",
        4,
    ),
)
RAG = Scenario(
    key="rag_qa",
    app_name="docs-qa",
    anthropic_share=0.35,
    system_prompt=(
        "Answer the employee's question using only the context passages below. Cite passages as [1], [2]. "
        "If the context does not contain the answer, say that you don't know and suggest who to ask."
    ),
)
EMBEDDING_MODELS: tuple[str, ...] = ("text-embedding-3-small", "text-embedding-3-large")

# --- extraction, writing, triage -------------------------------------------------------------------------

EXTRACTION = Scenario(
    key="data_extraction",
    app_name="invoice-extractor",
    anthropic_share=0.5,
    system_prompt=(
        "Extract structured data from the document. Reply with a single JSON object with the keys vendor, "
        "invoice_number, issue_date (YYYY-MM-DD), currency, total, and line_items (description, quantity, "
        "unit_price). Use null for anything missing. Do not add commentary."
    ),
    exchanges=(
        Exchange(
            "INVOICE #INV-2024-0912\nNorthwind Traders GmbH, Hauptstr. 5, Berlin\nDate: 12.09.2024\n"
            "2 x Ergonomic chair @ 289.00 EUR\n1 x Standing desk @ 640.00 EUR\nTotal: 1,218.00 EUR",
            '{"vendor":"Northwind Traders GmbH","invoice_number":"INV-2024-0912","issue_date":"2024-09-12",'
            '"currency":"EUR","total":1218.0,"line_items":[{"description":"Ergonomic chair","quantity":2,'
            '"unit_price":289.0},{"description":"Standing desk","quantity":1,"unit_price":640.0}]}',
        ),
        Exchange(
            "Bill from: Contoso Ltd\nInvoice no. C-88120   Issued 2024-10-03\nConsulting, 12h @ $150\n"
            "Total due $1,800",
            '{"vendor":"Contoso Ltd","invoice_number":"C-88120","issue_date":"2024-10-03","currency":"USD",'
            '"total":1800.0,"line_items":[{"description":"Consulting","quantity":12,"unit_price":150.0}]}',
        ),
        Exchange(
            "Receipt - Blue Bottle Coffee - 3 lattes - $17.25 - card ending 4242 - 2024-11-18 08:14",
            '{"vendor":"Blue Bottle Coffee","invoice_number":null,"issue_date":"2024-11-18","currency":"USD",'
            '"total":17.25,"line_items":[{"description":"Latte","quantity":3,"unit_price":5.75}]}',
        ),
    ),
)

WRITING = Scenario(
    key="writing_assistant",
    app_name="writing-assistant",
    anthropic_share=0.5,
    system_prompt="You help users rewrite text. Keep their meaning, fix grammar, match the requested tone.",
    dialogs=(
        (
            Exchange(
                "Make this sound more professional: hey, cant make it tmrw, can we move to thurs?",
                "Hi, unfortunately I can't make it tomorrow. Would Thursday work for you instead?",
            ),
            Exchange(
                "Less formal please, it's for a teammate.", "Hey, can't make it tomorrow. Thursday work?"
            ),
            Exchange("Perfect, thanks!", "You're welcome!"),
        ),
        (
            Exchange(
                "Summarise in one sentence: Our Q3 numbers beat expectations thanks to the new enterprise "
                "tier, but churn in the SMB segment rose for the second quarter in a row.",
                "Q3 beat expectations on the strength of the enterprise tier, though SMB churn rose again.",
            ),
            Exchange("Shorter.", "Enterprise lifted Q3; SMB churn keeps rising."),
        ),
        (
            Exchange(
                "Translate to French: The meeting has been moved to Thursday at 10am.",
                "La réunion a été déplacée à jeudi à 10 h.",
            ),
            Exchange("And to German?", "Das Meeting wurde auf Donnerstag um 10 Uhr verschoben."),
        ),
        (
            Exchange(
                "Write a short, warm thank-you note to a colleague who covered my on-call shift.",
                "Thanks so much for covering my on-call shift on short notice, I really owe you one!",
            ),
        ),
    ),
)

TRIAGE = Scenario(
    key="ticket_triage",
    app_name="nightly-ticket-triage",
    anthropic_share=0.0,
    system_prompt=(
        "Classify the support ticket into exactly one category: billing, bug, feature_request, account, "
        "other. Reply with the category only."
    ),
    exchanges=(
        Exchange("I was charged twice this month.", "billing"),
        Exchange("The export button does nothing on Safari.", "bug"),
        Exchange("Please add dark mode!", "feature_request"),
        Exchange("I can't log in after resetting my password.", "account"),
        Exchange("Do you have an office in Lisbon?", "other"),
    ),
)

CONTRACT_REVIEW_PROMPT = "You are a contracts lawyer. Answer precisely and cite clause numbers."
CONTRACT_QUESTION = "List every party, the term, and all termination clauses."
CONTRACT_ANSWER = (
    "Parties: Acme Corp (Customer) and Initech Ltd (Supplier). Term: 36 months from the Effective Date. "
    "Termination: for convenience with 90 days' notice (14.2) and for material breach (14.5)."
)

# --- failures, feedback, metrics -------------------------------------------------------------------------

# Errors as providers and SDKs report them: plain strings and structured bodies both occur in practice.
GENERATION_ERRORS: tuple[tuple[int, Any], ...] = (
    (429, "Rate limit reached for requests per min (RPM): Limit 500, Used 500, Requested 1. Please retry."),
    (
        429,
        {
            "type": "error",
            "error": {
                "type": "rate_limit_error",
                "message": "Number of request tokens has exceeded your per-minute rate limit",
            },
        },
    ),
    (529, {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
    (
        400,
        {
            "error": {
                "message": "This model's maximum context length is 128000 tokens. However, your "
                "messages resulted in 131072 tokens.",
                "type": "invalid_request_error",
                "code": "context_length_exceeded",
            }
        },
    ),
    (500, "Internal server error"),
    (408, "Request timed out after 60.0 seconds"),
)

TOOL_ERRORS: tuple[str, ...] = (
    "ConnectionError: upstream service unavailable (503)",
    "TimeoutError: tool did not respond within 10s",
)

FEEDBACK_CALM: tuple[str, ...] = (
    "Helpful, thanks.",
    "The answer was ok but a bit long.",
    "It didn't really answer my question.",
    "Worked after the second try.",
    "Good answer, would be nice to have links to the docs.",
)
FEEDBACK_STRONG: tuple[str, ...] = (
    "This is COMPLETELY useless!!! I've asked the same thing three times and it keeps ignoring me 😡",
    "Absolutely amazing, this saved me hours of work. Thank you so much!!! 🙏",
    "I'm furious. The bot promised a refund and nothing happened. Cancelling my subscription.",
    "Wow. Just wow. Best support experience I've ever had.",
)

RAG_METRICS: tuple[tuple[str, float, float], ...] = (
    # name, low, high
    ("answer_relevance", 0.2, 1.0),
    ("faithfulness", 0.3, 1.0),
    ("retrieval_precision_at_3", 0.0, 1.0),
)

# A real 16x16 PNG, reused for every image block: a real screenshot would only add bytes, not information.
SCREENSHOT_PNG_BASE64 = (
    "iVBORw0KGgoAAAANSUhEUgAAABAAAAAQCAIAAACQkWg2AAAAG0lEQVR42mM4oaFBEmKgvYav"
    "JIJRDaMaqKUBAAafic918jsbAAAAAElFTkSuQmCC"
)

# Size of the document in the oversized ("too large") trace: just over the 2,000,000-character guard.
HUGE_DOCUMENT_CHARS = 2_100_000


@functools.cache
def huge_document() -> str:
    """A ~2.1M-character contract, built once per process and shared by every oversized trace.

    Numbered clauses keep it looking like a real document while making it cheap: one join, then every
    oversized trace reuses the same string object.
    """
    clause = (
        "The Supplier shall provide the Services with reasonable skill and care, in accordance with "
        "good industry practice and the Service Levels in Schedule 2. Any failure to meet a Service "
        "Level entitles the Customer to the service credits set out in Schedule 3, which are its sole "
        "remedy for that failure."
    )
    parts: list[str] = ["MASTER SERVICES AGREEMENT\n\n"]
    size = len(parts[0])
    number = 1
    while size < HUGE_DOCUMENT_CHARS:
        part = f"{number // 20 + 1}.{number % 20 + 1} {clause}\n"
        parts.append(part)
        size += len(part)
        number += 1
    return "".join(parts)
