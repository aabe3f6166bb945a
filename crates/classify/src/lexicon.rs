//! Word lists: verbs by what they do, financial nouns, argument names. Every list is plain
//! data so that a verdict can always be traced to the word that produced it.

/// What a verb does, ordered from harmless to dangerous (the derived `Ord` is that order).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Verb {
    Read,
    Write,
    Execute,
    Financial,
    Destructive,
}

impl Verb {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Verb::Read => "a read verb",
            Verb::Write => "a write verb",
            Verb::Execute => "an execute verb",
            Verb::Financial => "a payment verb",
            Verb::Destructive => "a destructive verb",
        }
    }
}

/// Verbs recognised in tool names (exact, lower-case tokens) and at the start of
/// descriptions (after inflection is removed).
pub(crate) fn verb(word: &str) -> Option<Verb> {
    use Verb::*;
    Some(match word {
        // Destructive: the effect may not be undoable.
        "delete" | "remove" | "drop" | "destroy" | "wipe" | "prune" | "purge" | "erase"
        | "truncate" | "unlink" | "clear" | "terminate" | "uninstall" | "rm" | "del" | "nuke"
        | "shred" | "expunge" | "deprovision" | "decommission" | "obliterate" | "unenroll"
        | "unenrol" => Destructive,
        // Financial: moving money.
        "pay" | "refund" | "payout" | "purchase" | "buy" | "withdraw" | "deposit" | "disburse"
        | "remit" | "settle" => Financial,
        // Execute: runs code, commands, jobs or processes.
        "run" | "rerun" | "execute" | "exec" | "invoke" | "trigger" | "deploy" | "redeploy"
        | "launch" | "start" | "restart" | "stop" | "pause" | "resume" | "eval" | "evaluate"
        | "call" | "build" | "rebuild" | "compile" | "spawn" | "kill" | "test" | "dispatch"
        | "ssh" | "shell" | "bash" | "recreate" | "automate" | "orchestrate" | "retry" => Execute,
        // Write: creates or changes state.
        "create" | "add" | "insert" | "update" | "edit" | "modify" | "set" | "put" | "patch"
        | "write" | "save" | "store" | "upload" | "send" | "post" | "publish" | "submit"
        | "reply" | "rename" | "move" | "copy" | "import" | "assign" | "unassign" | "star"
        | "unstar" | "follow" | "unfollow" | "mark" | "dismiss" | "mute" | "unmute"
        | "schedule" | "transition" | "merge" | "rebase" | "commit" | "push" | "pull" | "clone"
        | "fork" | "init" | "initialize" | "initialise" | "install" | "configure" | "connect"
        | "disconnect" | "login" | "logout" | "signin" | "signout" | "auth" | "authenticate"
        | "authorize" | "authorise" | "register" | "unregister" | "deregister" | "enable"
        | "disable" | "activate" | "deactivate" | "cancel" | "approve" | "reject" | "accept"
        | "decline" | "invite" | "share" | "grant" | "revoke" | "archive" | "unarchive"
        | "restore" | "apply" | "provision" | "sync" | "refresh" | "reload" | "tokenize"
        | "tokenise" | "embed" | "upsert" | "replace" | "overwrite" | "append" | "attach"
        | "detach" | "fill" | "type" | "click" | "hover" | "drag" | "press" | "scroll"
        | "navigate" | "goto" | "open" | "close" | "switch" | "resize" | "emulate" | "reset"
        | "revert" | "rollback" | "confirm" | "finalize" | "finalise" | "fix" | "autofix"
        | "flip" | "transform" | "notify" | "request" | "react" | "pin" | "unpin" | "lock"
        | "unlock" | "block" | "unblock" | "complete" | "prepare" | "stage" | "unstage"
        | "checkout" | "stash" | "manage" | "change" | "adjust" | "duplicate" | "upgrade"
        | "downgrade" | "migrate" | "rotate" | "renew" | "scale" | "select" | "enter" | "input"
        | "draft" | "void" | "transfer" | "charge" | "suspend" | "unsuspend" | "ban" | "unban"
        | "enroll" | "enrol" => Write,
        // Read: returns data, changes nothing (by its own account).
        "get" | "list" | "read" | "search" | "find" | "query" | "fetch" | "retrieve" | "show"
        | "view" | "describe" | "inspect" | "lookup" | "look" | "count" | "check" | "download"
        | "export" | "explain" | "analyze" | "analyse" | "browse" | "display" | "return"
        | "poll" | "compare" | "diff" | "render" | "preview" | "capture" | "take"
        | "screenshot" | "snapshot" | "summarize" | "summarise" | "extract" | "scan"
        | "validate" | "verify" | "identify" | "whoami" | "discover" | "map" | "crawl"
        | "scrape" | "research" | "translate" | "transcribe" | "convert" | "generate"
        | "estimate" | "calculate" | "compute" | "measure" | "wait" | "ping" | "introspect"
        | "learn" | "recommend" | "suggest" | "advise" | "locate" | "see" | "watch" | "tail"
        | "print" | "dump" | "peek" | "detect" | "diagnose" | "audit" | "lint" | "decompile"
        | "disassemble" | "enumerate" | "access" | "provide" | "output" | "resolve" | "format"
        | "parse" | "review" | "monitor" | "probe" | "observe" | "sample" | "paginate" => Read,
        _ => return None,
    })
}

/// Verbs read only at the start of a description (they are mostly nouns inside names).
pub(crate) fn description_only_verb(word: &str) -> Option<Verb> {
    Some(match word {
        "log" | "record" | "book" | "index" | "label" | "tag" | "comment" | "message" | "email" => {
            Verb::Write
        }
        "process" | "perform" => Verb::Execute,
        _ => return None,
    })
}

/// Description-leading verbs that are often nouns ("Log label exploration"): they count as
/// verbs only when a determiner or object word follows.
pub(crate) fn noun_ambiguous(word: &str) -> bool {
    matches!(
        word,
        "log"
            | "record"
            | "book"
            | "index"
            | "label"
            | "tag"
            | "comment"
            | "message"
            | "email"
            | "process"
            | "test"
            | "trace"
            | "post"
            | "stage"
            | "pin"
            | "lock"
            | "block"
            | "map"
            | "query"
            | "sample"
            | "monitor"
            | "draft"
            | "charge"
            | "transfer"
            | "type"
            | "input"
            | "change"
            | "review"
            | "request"
            | "export"
            | "import"
            | "scale"
            | "patch"
            | "build"
            | "select"
            | "switch"
    )
}

/// Words that may follow a verb and confirm the verb reading ("Query *the* database").
pub(crate) fn determiner(word: &str) -> bool {
    matches!(
        word,
        "a" | "an"
            | "the"
            | "all"
            | "any"
            | "each"
            | "every"
            | "this"
            | "these"
            | "those"
            | "your"
            | "my"
            | "our"
            | "its"
            | "their"
            | "one"
            | "multiple"
            | "new"
            | "existing"
            | "specific"
            | "selected"
            | "current"
            | "given"
            | "some"
            | "available"
            | "recent"
            | "detailed"
            | "complete"
            | "full"
            | "active"
            | "up"
            | "out"
            | "or"
            | "and"
    )
}

/// Words skipped at the start of a description before its verb ("Use to …", "This tool …").
pub(crate) fn filler(word: &str) -> bool {
    matches!(
        word,
        "this"
            | "tool"
            | "use"
            | "used"
            | "to"
            | "allows"
            | "allow"
            | "you"
            | "lets"
            | "let"
            | "helps"
            | "help"
            | "can"
            | "be"
            | "will"
            | "i"
            | "we"
            | "it"
            | "please"
            | "also"
            | "just"
            | "mcp"
            | "function"
            | "endpoint"
            | "that"
            | "which"
            | "here"
    )
}

/// Names that are two tokens but one noun: "pull request", "merge request", …
pub(crate) fn compound_noun(first: &str, second: &str) -> bool {
    matches!(
        (first, second),
        ("pull", "request" | "requests")
            | ("merge", "request" | "requests")
            | ("push", "notification" | "notifications")
            | (
                "test",
                "result" | "results" | "case" | "cases" | "suite" | "suites" | "run" | "runs"
            )
            | (
                "build",
                "log" | "logs" | "status" | "id" | "failure" | "failures" | "info"
            )
            | (
                "access",
                "list" | "lists" | "token" | "tokens" | "key" | "keys" | "log" | "logs"
            )
            | ("change", "log" | "logs" | "set" | "sets")
            | ("deploy", "key" | "keys")
            | ("start", "time" | "date")
            | ("search", "result" | "results" | "index" | "indexes")
            | ("call", "log" | "logs" | "graph" | "stack")
            | ("run", "id" | "ids" | "log" | "logs" | "status")
            | ("type", "info" | "definition" | "definitions")
            | ("export", "format")
            | ("set", "of")
            | (
                "auth",
                "status" | "state" | "info" | "token" | "url" | "config"
            )
            | ("login", "status" | "url" | "info")
    )
}

/// Nouns that, ending a verb-less name, mean "information about": `db_stats`, `cert_info`.
pub(crate) fn report_noun(word: &str) -> bool {
    matches!(
        word,
        "stats"
            | "statistics"
            | "status"
            | "info"
            | "details"
            | "summary"
            | "version"
            | "versions"
            | "health"
            | "metrics"
            | "logs"
            | "schema"
            | "indexes"
            | "usage"
            | "overview"
            | "report"
            | "history"
            | "whoami"
            | "aging"
            | "ageing"
            | "dashboard"
            | "kpi"
            | "kpis"
            | "breakdown"
            | "analytics"
    )
}

/// Objects whose destruction is routine: a destructive verb applied to them reads as Write.
pub(crate) fn ephemeral_object(word: &str) -> bool {
    matches!(
        word,
        "session"
            | "sessions"
            | "cache"
            | "caches"
            | "tab"
            | "tabs"
            | "dialog"
            | "selection"
            | "highlight"
            | "highlights"
            | "cookie"
            | "cookies"
            | "console"
            | "screen"
            | "reaction"
            | "reactions"
            | "breakpoint"
            | "breakpoints"
            | "notification"
            | "notifications"
            | "lock"
            | "locks"
            | "temp"
            | "tmp"
            | "watch"
            | "watcher"
            | "listener"
            | "timer"
    )
}

/// Nouns that mark a tool as dealing with money. `subscription` is qualified separately.
pub(crate) fn financial_noun(word: &str) -> bool {
    matches!(
        word,
        "invoice"
            | "invoices"
            | "refund"
            | "refunds"
            | "payment"
            | "payments"
            | "payout"
            | "payouts"
            | "billing"
            | "paymentintent"
            | "paymentintents"
            | "wallet"
            | "wallets"
            | "funds"
            | "payroll"
            | "dispute"
            | "disputes"
            | "chargeback"
            | "chargebacks"
            | "money"
            | "subscription"
            | "subscriptions"
            | "charge"
            | "charges"
    )
}

/// Words before "subscription" that make it a non-billing subscription.
pub(crate) fn subscription_qualifier(word: &str) -> bool {
    matches!(
        word,
        "notification"
            | "notifications"
            | "webhook"
            | "webhooks"
            | "event"
            | "events"
            | "topic"
            | "topics"
            | "channel"
            | "channels"
            | "repository"
            | "repo"
            | "pubsub"
            | "push"
            | "azure"
            | "grid"
            | "feed"
            | "rss"
            | "email"
            | "newsletter"
    )
}

/// Verbs that turn financial only next to money (transfer funds, capture a payment).
pub(crate) fn money_context_verb(word: &str) -> bool {
    matches!(word, "transfer" | "capture" | "void" | "charge")
}

/// Argument names that carry an amount of money.
pub(crate) fn amount_arg(name: &str) -> bool {
    matches!(
        name,
        "amount"
            | "amount_cents"
            | "amount_in_cents"
            | "unit_amount"
            | "total_amount"
            | "amount_total"
            | "price_amount"
            | "payment_amount"
            | "refund_amount"
            | "value_cents"
    )
}

/// Argument names that carry a currency.
pub(crate) fn currency_arg(name: &str) -> bool {
    matches!(
        name,
        "currency" | "currency_code" | "currency_id" | "iso_currency"
    )
}

/// Argument names that identify a payment instrument or account.
pub(crate) fn payment_instrument_arg(name: &str) -> bool {
    matches!(
        name,
        "iban"
            | "card_number"
            | "card"
            | "account_number"
            | "routing_number"
            | "payment_method"
            | "payment_method_id"
            | "source_account"
            | "destination_account"
            | "bic"
            | "swift"
    )
}

/// Argument names that say where a message goes.
pub(crate) fn recipient_arg(name: &str) -> bool {
    matches!(
        name,
        "to" | "cc"
            | "bcc"
            | "recipient"
            | "recipients"
            | "email"
            | "emails"
            | "phone"
            | "phone_number"
            | "chat"
            | "chat_id"
            | "channel"
            | "channel_id"
            | "partner_ids"
            | "attendees"
    )
}

/// Boolean flags whose presence says the tool changes something.
pub(crate) fn mutation_flag(name: &str) -> bool {
    matches!(
        name,
        "dry_run" | "dryrun" | "write_back" | "writeback" | "overwrite" | "persist" | "apply"
    )
}

/// Enum values of an operation selector that destroy data.
pub(crate) fn destructive_operation(value: &str) -> bool {
    let v = value.to_ascii_lowercase();
    v.split(|c: char| !c.is_ascii_alphanumeric())
        .any(|t| matches!(verb(t), Some(Verb::Destructive)))
        || matches!(v.as_str(), "hard_reset" | "reset_hard" | "force_push")
}
