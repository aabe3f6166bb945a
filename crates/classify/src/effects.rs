//! What a call reaches beyond its verb: messages to people outside, code fetched or deployed,
//! credentials and access, an ERP's business records and ledger, secrets handed out. Each rule
//! names the words it found, so its sentence in the evidence can be checked against the
//! definition.

use crate::features::{Arg, Found};
use crate::lexicon::Verb;
use crate::Risk;

/// The facts of one definition the rules read.
pub(crate) struct Ctx<'a> {
    pub server: &'a str,
    /// Name tokens (prefix stripped).
    pub name: &'a [String],
    /// Verbs of the name and of the description's opening.
    pub verbs: Vec<&'a Found>,
    /// Words of the first sentence.
    pub sentence: &'a [String],
    /// The whole description, lower-case.
    pub desc: &'a str,
    pub args: &'a [Arg],
}

/// What a rule concluded.
pub(crate) struct Effect {
    /// A new category, if the rule changes it.
    pub class: Option<Verb>,
    /// A risk level the verdict may not fall below.
    pub floor: Option<Risk>,
    /// The sentence for the evidence.
    pub evidence: String,
}

impl Ctx<'_> {
    fn name_has(&self, f: impl Fn(&str) -> bool) -> Option<&str> {
        self.name.iter().map(String::as_str).find(|w| f(w))
    }

    fn sentence_has(&self, f: impl Fn(&str) -> bool) -> Option<&str> {
        self.sentence.iter().map(String::as_str).find(|w| f(w))
    }

    /// A word of the name or of the first sentence.
    fn any_has(&self, f: impl Fn(&str) -> bool + Copy) -> Option<&str> {
        self.name_has(f).or_else(|| self.sentence_has(f))
    }

    fn verb(&self, f: impl Fn(&str) -> bool) -> Option<&Found> {
        self.verbs.iter().copied().find(|v| f(&v.word))
    }

    /// An ERP: the server, the name or the description says so, or the description names
    /// Odoo-style models (`account.move`, `stock.quant`).
    fn erp(&self) -> Option<String> {
        let s = self.server.to_lowercase();
        for w in ["odoo", "erp", "netsuite", "sap", "dynamics", "erpnext"] {
            if s.contains(w) || self.name.iter().any(|t| t == w) {
                return Some(format!("server `{}`", self.server));
            }
        }
        for w in ["odoo", "erp"] {
            if self
                .desc
                .split(|c: char| !c.is_alphanumeric())
                .any(|t| t == w)
            {
                return Some(format!("the description mentions {w}"));
            }
        }
        None
    }
}

fn lemma(word: &str) -> String {
    crate::features::lemma_verb(word)
        .map(|(_, l)| l)
        .unwrap_or_else(|| word.to_string())
}

/// Nouns of a message to someone.
fn message_noun(w: &str) -> bool {
    matches!(
        w,
        "message"
            | "messages"
            | "email"
            | "emails"
            | "mail"
            | "e-mail"
            | "sms"
            | "mms"
            | "chat"
            | "dm"
            | "whatsapp"
            | "telegram"
            | "slack"
            | "reminder"
            | "reminders"
            | "newsletter"
    )
}

/// Verbs that deliver a message.
fn message_verb(w: &str) -> bool {
    matches!(
        lemma(w).as_str(),
        "send" | "post" | "reply" | "notify" | "message" | "email" | "broadcast" | "text" | "dm"
    )
}

/// Arguments that hold a secret.
fn secret_arg(name: &str) -> bool {
    matches!(
        name,
        "password"
            | "passwd"
            | "api_key"
            | "apikey"
            | "api_hash"
            | "api_secret"
            | "secret"
            | "client_secret"
            | "token"
            | "access_token"
            | "refresh_token"
            | "private_key"
            | "credentials"
            | "credentials_file"
            | "credentials_json"
    ) || name.ends_with("_password")
        || name.ends_with("_token")
        || name.ends_with("_api_key")
        || name.ends_with("_secret")
}

/// Nouns of access control: who can get in.
fn access_noun(w: &str) -> bool {
    matches!(
        w,
        "access"
            | "role"
            | "roles"
            | "role-based"
            | "rbac"
            | "iam"
            | "permission"
            | "permissions"
            | "credential"
            | "credentials"
            | "password"
            | "passwords"
            | "secret"
            | "secrets"
            | "firewall"
            | "acl"
            | "cert"
            | "certs"
            | "certificate"
            | "certificates"
    )
}

/// Nouns of an ERP's business records: accounting, tax, stock.
fn business_noun(w: &str) -> bool {
    matches!(
        w,
        "account"
            | "accounting"
            | "journal"
            | "journals"
            | "ledger"
            | "tax"
            | "taxes"
            | "fiscal"
            | "vat"
            | "invoice"
            | "invoices"
            | "bill"
            | "bills"
            | "stock"
            | "inventory"
            | "quant"
            | "quants"
            | "valuation"
            | "warehouse"
            | "payroll"
    )
}

/// Objects whose installation or loading brings code in.
fn code_package(w: &str) -> bool {
    matches!(
        w,
        "plugin"
            | "plugins"
            | "module"
            | "modules"
            | "extension"
            | "extensions"
            | "package"
            | "packages"
            | "addon"
            | "addons"
            | "binary"
            | "binaries"
            | "dependencies"
            | "provider"
            | "providers"
    )
}

/// Objects of a deployment.
fn deployment_noun(w: &str) -> bool {
    matches!(
        w,
        "deployment"
            | "deployments"
            | "pipeline"
            | "pipelines"
            | "stack"
            | "stacks"
            | "release"
            | "releases"
            | "migration"
            | "migrations"
            | "terraform"
            | "tf"
    )
}

fn push(out: &mut Vec<Effect>, class_now: &mut Option<Verb>, e: Effect) {
    if e.class.is_some() {
        *class_now = e.class;
    }
    out.push(e);
}

/// Runs every rule and returns what fired, in order. `class` is the category so far.
pub(crate) fn effects(c: &Ctx, class: Option<Verb>) -> Vec<Effect> {
    let mut out = Vec::new();
    let writes = matches!(class, Some(Verb::Write) | Some(Verb::Execute));
    let mut class_now = class;

    // Stopping, unenrolling or disabling an agent or an account removes protection or a
    // person's access.
    if let Some(v) = c.verb(|w| {
        matches!(
            lemma(w).as_str(),
            "stop" | "disable" | "deactivate" | "suspend" | "unenroll" | "unenrol" | "ban"
        )
    }) {
        let object = v.object.iter().chain(v.before.iter()).find(|o| {
            matches!(
                o.as_str(),
                "agent"
                    | "agents"
                    | "account"
                    | "accounts"
                    | "user"
                    | "users"
                    | "sensor"
                    | "sensors"
                    | "member"
                    | "members"
            )
        });
        if let (Some(o), true) = (object, class != Some(Verb::Destructive)) {
            push(
                &mut out,
                &mut class_now,
                Effect {
                    class: Some(Verb::Destructive),
                    floor: None,
                    evidence: format!(
                        "\"{}\" applied to \"{o}\": it cuts off an agent's protection or a person's access — Destructive",
                        v.word
                    ),
                },
            );
        }
    }

    // Resetting or reverting a branch or a database to an earlier state loses what changed since.
    if class == Some(Verb::Write) {
        if let Some(v) = c.verb(|w| matches!(lemma(w).as_str(), "reset" | "revert")) {
            let object = c.verbs.iter().flat_map(|f| f.object.iter()).find(|o| {
                matches!(
                    o.as_str(),
                    "branch"
                        | "branches"
                        | "database"
                        | "databases"
                        | "db"
                        | "data"
                        | "project"
                        | "instance"
                        | "environment"
                )
            });
            if let Some(o) = object {
                push(
                    &mut out,
                    &mut class_now,
                    Effect {
                        class: Some(Verb::Destructive),
                        floor: None,
                        evidence: format!(
                            "\"{}\" a {o} to an earlier state: whatever changed since is lost — Destructive",
                            v.word
                        ),
                    },
                );
            }
        }
    }

    // Starting a transfer or a payout moves money.
    if writes {
        if let Some(n) = c.name_has(|w| {
            matches!(
                w,
                "transfer" | "transfers" | "payout" | "payouts" | "wire" | "remittance"
            )
        }) {
            let other = c.any_has(|w| {
                matches!(
                    w,
                    "file"
                        | "files"
                        | "ownership"
                        | "repository"
                        | "repo"
                        | "domain"
                        | "call"
                        | "data"
                )
            });
            if other.is_none() {
                push(
                    &mut out,
                    &mut class_now,
                    Effect {
                        class: Some(Verb::Financial),
                        floor: None,
                        evidence: format!("the name starts a {n}: a transfer of money, Financial"),
                    },
                );
            }
        }
    }

    // Posting to the ledger or valuing stock.
    if writes && class_now != Some(Verb::Financial) {
        let text = c.sentence.join(" ");
        let hit = [
            "journal entry",
            "journal entries",
            "journal item",
            "stock valuation",
            "inventory valuation",
        ]
        .into_iter()
        .find(|p| text.contains(p));
        if let Some(p) = hit {
            push(
                &mut out,
                &mut class_now,
                Effect {
                    class: Some(Verb::Financial),
                    floor: None,
                    evidence: format!(
                        "the first sentence makes a \"{p}\": it posts money or values stock in the ledger — Financial"
                    ),
                },
            );
        }
    }
    let writes = matches!(class_now, Some(Verb::Write) | Some(Verb::Execute));

    // Messages to people or systems outside.
    if writes {
        let verb = c.verb(message_verb);
        let platform = |w: &str| matches!(w, "telegram" | "slack" | "whatsapp");
        let noun = c
            .any_has(|w| message_noun(w) && !platform(w))
            .or_else(|| c.any_has(message_noun));
        let call = c
            .verb(|w| matches!(lemma(w).as_str(), "create" | "place" | "make" | "initiate"))
            .filter(|v| v.object.iter().any(|o| o == "call" || o == "calls"))
            .map(|_| "call")
            .or_else(|| {
                let t = c.sentence.join(" ");
                ["voice call", "phone call"]
                    .into_iter()
                    .find(|p| t.contains(p))
            });
        if let (Some(v), Some(n)) = (verb, noun) {
            push(
                &mut out,
                &mut class_now,
                Effect {
                    class: Some(Verb::Execute),
                    floor: None,
                    evidence: format!(
                        "\"{}\" with \"{n}\": it sends a message to people or systems outside, which cannot be taken back — Execute",
                        v.word
                    ),
                },
            );
        } else if let Some(p) = call {
            push(
                &mut out,
                &mut class_now,
                Effect {
                    class: Some(Verb::Execute),
                    floor: None,
                    evidence: format!("it places a {p}: it reaches a person outside — Execute"),
                },
            );
        }
    }

    // Code brought in or shipped: clones, installs, plugin loads, deployments, migrations.
    if class_now == Some(Verb::Write) {
        let clone = c.verb(|w| lemma(w) == "clone").filter(|_| {
            c.any_has(|w| matches!(w, "repository" | "repositories" | "repo" | "repos" | "git"))
                .is_some()
        });
        let install = c.verb(|w| matches!(lemma(w).as_str(), "install" | "reinstall"));
        let load = c
            .verb(|w| matches!(lemma(w).as_str(), "load" | "reload" | "link" | "import"))
            .and_then(|v| c.any_has(code_package).map(|p| (v, p)));
        // A deployment noun with a verb that ships it; with "create", only as the direct
        // object (`create_deployment`, not "Creates a branch with migrations").
        let deploy = c
            .any_has(deployment_noun)
            .filter(|_| {
                c.verb(|w| {
                    matches!(
                        lemma(w).as_str(),
                        "apply"
                            | "complete"
                            | "manage"
                            | "init"
                            | "initialize"
                            | "initialise"
                            | "merge"
                            | "promote"
                    )
                })
                .is_some()
            })
            .or_else(|| {
                c.verb(|w| lemma(w) == "create").and_then(|v| {
                    v.object.iter().map(String::as_str).find(|o| {
                        matches!(
                            *o,
                            "deployment"
                                | "deployments"
                                | "stack"
                                | "stacks"
                                | "release"
                                | "releases"
                        )
                    })
                })
            });
        let production = c
            .verb(|w| lemma(w) == "merge")
            .filter(|_| c.sentence_has(|w| w == "production").is_some());
        // Restoring a project, an instance or a database from a pause or a backup acts on a
        // live service.
        let restore = c
            .verb(|w| matches!(lemma(w).as_str(), "restore" | "unpause"))
            .and_then(|v| {
                v.object
                    .iter()
                    .chain(v.before.iter())
                    .find(|o| {
                        matches!(
                            o.as_str(),
                            "project"
                                | "projects"
                                | "instance"
                                | "instances"
                                | "cluster"
                                | "clusters"
                                | "database"
                                | "databases"
                                | "server"
                                | "servers"
                                | "service"
                                | "services"
                                | "backup"
                                | "snapshot"
                        )
                    })
                    .map(|o| (v, o))
            });
        let e = if let Some(v) = clone {
            Some(format!(
                "\"{}\" a repository: it runs git against a remote and writes its code here — Execute",
                v.word
            ))
        } else if let Some(v) = install {
            Some(format!(
                "\"{}\": installing software runs its installer and changes the machine — Execute",
                v.word
            ))
        } else if let Some((v, p)) = load {
            Some(format!(
                "\"{}\" {p}: it loads code into the running server — Execute",
                v.word
            ))
        } else if let Some((v, o)) = restore {
            Some(format!(
                "\"{}\" a {o}: it brings back or overwrites a live service — Execute",
                v.word
            ))
        } else if let Some(v) = production {
            Some(format!(
                "\"{}\" into production: it changes a deployment — Execute",
                v.word
            ))
        } else {
            deploy.map(|n| format!("acts on \"{n}\": it runs or changes a deployment — Execute"))
        };
        if let Some(evidence) = e {
            push(
                &mut out,
                &mut class_now,
                Effect {
                    class: Some(Verb::Execute),
                    floor: None,
                    evidence,
                },
            );
        }
    }

    // Risk floors for writes: credentials, access, certificates, business records, bulk
    // changes, any cloud resource, merges.
    if class_now == Some(Verb::Write) {
        let mut floor = |evidence: String| {
            out.push(Effect {
                class: None,
                floor: Some(Risk::High),
                evidence,
            })
        };
        if let Some(a) = c.args.iter().find(|a| secret_arg(&a.lname)) {
            floor(format!(
                "argument {} is a secret: the tool stores credentials or signs in with them — risk High",
                a.describe()
            ));
        } else if let Some(n) = c.any_has(access_noun) {
            floor(format!(
                "it changes access control (\"{n}\"): who or what is let in — risk High"
            ));
        } else if let Some(n) = c
            .verb(|w| matches!(lemma(w).as_str(), "create" | "add" | "invite"))
            .and_then(|v| {
                v.object
                    .iter()
                    .find(|o| matches!(o.as_str(), "user" | "users"))
            })
        {
            floor(format!("it creates a {n}: a new way in — risk High"));
        } else if let (Some(erp), Some(n)) = (
            c.erp(),
            c.any_has(business_noun).or_else(|| {
                let model = c.args.iter().any(|a| a.lname == "model");
                let values = c
                    .args
                    .iter()
                    .any(|a| matches!(a.lname.as_str(), "values" | "vals"));
                (model && values).then_some("records of any model")
            }),
        ) {
            floor(format!(
                "in an ERP ({erp}) a write to business records ({n}) is High: the data's domain raises the level"
            ));
        } else if let Some(v) = c.verb(|w| {
            matches!(
                lemma(w).as_str(),
                "update" | "modify" | "replace" | "patch" | "overwrite"
            )
        }) {
            if let Some(q) = c.name_has(|w| matches!(w, "many" | "all" | "bulk")) {
                floor(format!(
                    "\"{}\" {q}: a bulk change of every matching record, no undo — risk High",
                    v.word
                ));
            } else if v
                .object
                .first()
                .is_some_and(|o| o == "resource" || o == "resources")
            {
                floor(format!(
                    "\"{}\" any resource its arguments name (access policies included) — risk High",
                    v.word
                ));
            }
        } else if let Some(v) = c.verb(|w| lemma(w) == "create").filter(|v| {
            v.object
                .first()
                .is_some_and(|o| o == "resource" || o == "resources")
        }) {
            floor(format!(
                "\"{}\" any resource its arguments name (access policies included) — risk High",
                v.word
            ));
        } else if let Some(v) = c.verb(|w| lemma(w) == "merge").filter(|v| {
            v.object.windows(2).any(|p| {
                matches!(
                    (p[0].as_str(), p[1].as_str()),
                    ("pull" | "merge", "request" | "requests")
                )
            })
        }) {
            floor(format!(
                "\"{}\" a pull request: code reaches the target branch, from where CI/CD may ship it — risk High",
                v.word
            ));
        }
    }

    // Reads that hand out secrets.
    if class_now == Some(Verb::Read) {
        let text = format!("{} {}", c.name.join(" "), c.sentence.join(" "));
        let public = c
            .any_has(|w| matches!(w, "publishable" | "public" | "anonymous" | "anon"))
            .is_some();
        let hit = [
            "connection string",
            "api key",
            "api keys",
            "access key",
            "access keys",
            "secret key",
            "private key",
            "configuration keys",
            "config keys",
            "credentials",
            "passwords",
            "password for",
            "secrets",
            "environment variables",
        ]
        .into_iter()
        .find(|p| text.contains(p));
        if let (Some(p), false) = (hit, public) {
            out.push(Effect {
                class: None,
                floor: Some(Risk::High),
                evidence: format!(
                    "it returns {p}: whoever reads the answer can sign in — risk High"
                ),
            });
        }
    }
    out
}
