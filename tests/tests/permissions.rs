//! The permissions table (`infra/permissions.hcl`) checked against the
//! Terraform (`infra/*.tf`), both read with `hcl-rs`: every call's role is
//! granted to its identity on the scope the table names, holds the call's
//! permission, and every grant to a listed identity is needed by some call.
//! And every dead-letter policy has the Pub/Sub service agent's two grants,
//! and every sender (push subscription, Scheduler job) waits as long as the
//! code's deadlines say (`server::PUSH_ACK_DEADLINE`,
//! `server::SCHEDULER_ATTEMPT_DEADLINE`); and the plan models detection
//! with the uptime check and alert settings the Terraform sets.
//! The emulators enforce no IAM, so this is what catches a call without its
//! grant before Google Cloud does (docs/permissions.md).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use hcl::{Block, Body, Expression};

/// The `infra/` folder of the repository.
fn infra() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra")
}

/// `path` parsed as HCL; a parse error names the file.
fn parse(path: &Path) -> Body {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    hcl::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The source text of `expr`: a plain string without its quotes, anything
/// else (references, templates, lists) as HCL writes it.
fn text(expr: &Expression) -> String {
    match expr {
        Expression::String(value) => value.clone(),
        other => {
            hcl::format::to_string(other).unwrap_or_else(|e| panic!("cannot format {other:?}: {e}"))
        }
    }
}

/// The text of `body`'s attribute `key`, if it has one.
fn attribute(body: &Body, key: &str) -> Option<String> {
    body.attributes()
        .find(|attr| attr.key() == key)
        .map(|attr| text(attr.expr()))
}

/// The first label of `block`, or "" without one.
fn label(block: &Block, index: usize) -> &str {
    block.labels().get(index).map_or("", |l| l.as_str())
}

/// Whether `haystack` names `reference` as a whole (`x.a` in `x.a.email`
/// or `${x.a}`, but not in `x.a_b.email`).
fn references(haystack: &str, reference: &str) -> bool {
    haystack.match_indices(reference).any(|(at, _)| {
        let next = haystack[at + reference.len()..].chars().next();
        !matches!(next, Some(c) if c.is_ascii_alphanumeric() || c == '_' || c == '-')
    })
}

/// One Terraform resource: where it is, its type and name, and its body.
struct Resource {
    file: String,
    kind: String,
    name: String,
    body: Body,
}

impl Resource {
    fn attribute(&self, key: &str) -> Option<String> {
        attribute(&self.body, key)
    }

    fn at(&self) -> String {
        format!("infra/{}: {}.{}", self.file, self.kind, self.name)
    }
}

/// Every resource of every `infra/*.tf`.
fn terraform() -> Vec<Resource> {
    let mut files: Vec<PathBuf> = fs::read_dir(infra())
        .expect("infra/")
        .map(|entry| entry.expect("infra/ entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "tf"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .tf file in {}", infra().display());
    let mut resources = Vec::new();
    for path in files {
        let file = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        for block in parse(&path)
            .blocks()
            .filter(|b| b.identifier() == "resource")
        {
            resources.push(Resource {
                file: file.clone(),
                kind: label(block, 0).to_string(),
                name: label(block, 1).to_string(),
                body: block.body().clone(),
            });
        }
    }
    resources
}

/// One IAM grant of the Terraform: `*_iam_member` resources.
struct Grant<'a> {
    resource: &'a Resource,
    role: String,
    member: String,
}

fn grants(resources: &[Resource]) -> Vec<Grant<'_>> {
    resources
        .iter()
        .filter(|r| r.kind.ends_with("_iam_member"))
        .map(|resource| {
            let role = resource.attribute("role").unwrap_or_default();
            Grant {
                role: role.strip_suffix(".id").unwrap_or(&role).to_string(),
                member: resource.attribute("member").unwrap_or_default(),
                resource,
            }
        })
        .collect()
}

/// One call of the table.
struct Call {
    method: String,
    permission: String,
    role: String,
    grant: String,
}

/// One identity of the table and its calls.
struct Identity {
    name: String,
    account: String,
    calls: Vec<Call>,
}

/// The table: predefined roles' permissions, and the identities.
struct Table {
    roles: BTreeMap<String, Vec<String>>,
    identities: Vec<Identity>,
}

/// Every string of a list attribute.
fn strings(body: &Body, key: &str) -> Vec<String> {
    match body.attributes().find(|a| a.key() == key).map(|a| a.expr()) {
        Some(Expression::Array(items)) => items.iter().map(text).collect(),
        _ => Vec::new(),
    }
}

fn table() -> Table {
    let path = infra().join("permissions.hcl");
    let body = parse(&path);
    let required = |block: &Block, body: &Body, key: &str| {
        attribute(body, key).unwrap_or_else(|| {
            panic!(
                "infra/permissions.hcl: {} {:?} lacks {key}",
                block.identifier(),
                label(block, 0)
            )
        })
    };
    let roles = body
        .blocks()
        .filter(|b| b.identifier() == "role")
        .map(|b| (label(b, 0).to_string(), strings(b.body(), "permissions")))
        .collect();
    let identities = body
        .blocks()
        .filter(|b| b.identifier() == "service")
        .map(|service| Identity {
            name: label(service, 0).to_string(),
            account: required(service, service.body(), "account"),
            calls: service
                .body()
                .blocks()
                .filter(|b| b.identifier() == "call")
                .map(|call| Call {
                    method: required(service, call.body(), "method"),
                    permission: required(service, call.body(), "permission"),
                    role: required(service, call.body(), "role"),
                    grant: required(service, call.body(), "grant"),
                })
                .collect(),
        })
        .collect();
    Table { roles, identities }
}

/// The permissions `role` holds: a predefined role's from the table, a
/// custom role's from its Terraform resource.
fn role_permissions(role: &str, table: &Table, resources: &[Resource]) -> Option<Vec<String>> {
    if let Some(custom) = role.strip_prefix("google_project_iam_custom_role.") {
        return resources
            .iter()
            .find(|r| r.kind == "google_project_iam_custom_role" && r.name == custom)
            .map(|r| strings(&r.body, "permissions"));
    }
    table.roles.get(role).cloned()
}

/// Fails with every problem found, one per line.
fn assert_none(what: &str, problems: Vec<String>) {
    assert!(problems.is_empty(), "{what}:\n{}", problems.join("\n"));
}

#[test]
fn every_call_has_its_permission_granted_to_its_identity() {
    let (resources, table) = (terraform(), table());
    let grants = grants(&resources);
    let mut problems = Vec::new();
    for identity in &table.identities {
        assert!(!identity.calls.is_empty(), "{}: no call", identity.name);
        for call in &identity.calls {
            let about = format!("{} calls {}", identity.name, call.method);
            match role_permissions(&call.role, &table, &resources) {
                None => problems.push(format!(
                    "{about}: role {} is neither a role block of infra/permissions.hcl nor a custom role of infra/*.tf",
                    call.role
                )),
                Some(permissions) if !permissions.contains(&call.permission) => {
                    problems.push(format!(
                        "{about}: role {} does not hold {} (it holds {})",
                        call.role,
                        call.permission,
                        permissions.join(", ")
                    ));
                }
                Some(_) => {}
            }
            let granted = grants.iter().any(|g| {
                g.resource.kind == call.grant
                    && g.role == call.role
                    && references(&g.member, &identity.account)
            });
            if !granted {
                problems.push(format!(
                    "{about}: needs {} through {}, but no {} in infra/*.tf grants {} to {}",
                    call.permission, call.role, call.grant, call.role, identity.account
                ));
            }
        }
    }
    assert_none("calls without their grant", problems);
}

#[test]
fn every_grant_to_a_listed_identity_is_needed_by_a_call() {
    let (resources, table) = (terraform(), table());
    let mut problems = Vec::new();
    for grant in grants(&resources) {
        for identity in table
            .identities
            .iter()
            .filter(|i| references(&grant.member, &i.account))
        {
            let needed = identity
                .calls
                .iter()
                .any(|c| c.role == grant.role && c.grant == grant.resource.kind);
            if !needed {
                problems.push(format!(
                    "{} grants {} to {}, but no call of {} in infra/permissions.hcl needs it",
                    grant.resource.at(),
                    grant.role,
                    identity.account,
                    identity.name
                ));
            }
        }
    }
    assert_none("grants no call explains", problems);
}

#[test]
fn every_cloud_run_service_runs_as_a_listed_identity() {
    let (resources, table) = (terraform(), table());
    let mut problems = Vec::new();
    for service in resources
        .iter()
        .filter(|r| r.kind == "google_cloud_run_v2_service")
    {
        let account = service
            .body
            .blocks()
            .filter(|b| b.identifier() == "template")
            .find_map(|template| attribute(template.body(), "service_account"))
            .unwrap_or_default();
        if !table
            .identities
            .iter()
            .any(|i| references(&account, &i.account))
        {
            problems.push(format!(
                "{} runs as {account:?}, which infra/permissions.hcl does not list",
                service.at()
            ));
        }
    }
    assert_none("services whose calls nobody listed", problems);
}

/// Where a dead-letter policy is set: the subscription (as a grant's
/// `subscription` and `for_each` would name it) and the dead-letter topic
/// resource.
struct DeadLetterPolicy {
    at: String,
    subscription: Subscription,
    topic: String,
}

/// How a subscription is named: a `google_pubsub_subscription` resource,
/// or an expression (an Eventarc trigger's subscription) under a
/// `for_each`.
enum Subscription {
    Resource(String),
    Expression { expr: String, for_each: String },
}

/// The text between `start` and the next `end` after it in `haystack`.
fn between<'a>(haystack: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = haystack.find(start)? + start.len();
    let len = haystack[from..].find(end)?;
    Some(&haystack[from..from + len])
}

/// The `google_pubsub_topic.NAME` an expression such as
/// `google_pubsub_topic.NAME.id` names.
fn topic_resource(expr: &str) -> Option<String> {
    let name = expr.strip_prefix("google_pubsub_topic.")?;
    Some(format!("google_pubsub_topic.{}", name.split('.').next()?))
}

/// Every dead-letter policy of the Terraform: `dead_letter_policy` blocks
/// of subscriptions, and the `gcloud pubsub subscriptions update
/// --dead-letter-topic` commands that set one on Eventarc's subscriptions.
fn dead_letter_policies(resources: &[Resource]) -> Vec<DeadLetterPolicy> {
    let mut policies = Vec::new();
    for resource in resources {
        if resource.kind == "google_pubsub_subscription" {
            for policy in resource
                .body
                .blocks()
                .filter(|b| b.identifier() == "dead_letter_policy")
            {
                let topic = attribute(policy.body(), "dead_letter_topic").unwrap_or_default();
                policies.push(DeadLetterPolicy {
                    at: resource.at(),
                    subscription: Subscription::Resource(format!(
                        "google_pubsub_subscription.{}",
                        resource.name
                    )),
                    topic: topic_resource(&topic).unwrap_or(topic),
                });
            }
        }
        for provisioner in resource
            .body
            .blocks()
            .filter(|b| b.identifier() == "provisioner")
        {
            let command = attribute(provisioner.body(), "command").unwrap_or_default();
            let (Some(subscription), Some(topic)) = (
                between(&command, "subscriptions update ${", "}"),
                between(&command, "--dead-letter-topic ${", "}"),
            ) else {
                continue;
            };
            policies.push(DeadLetterPolicy {
                at: resource.at(),
                subscription: Subscription::Expression {
                    expr: subscription.to_string(),
                    for_each: resource.attribute("for_each").unwrap_or_default(),
                },
                topic: topic_resource(topic).unwrap_or_else(|| topic.to_string()),
            });
        }
    }
    policies
}

#[test]
fn every_dead_letter_policy_has_the_pubsub_agents_grants() {
    let resources = terraform();
    let grants = grants(&resources);
    let agent = "local.pubsub_service_agent";
    let policies = dead_letter_policies(&resources);
    assert!(
        policies.len() >= 4,
        "found only {} dead-letter policies in infra/*.tf: is the parsing of them broken?",
        policies.len()
    );
    let mut problems = Vec::new();
    for policy in &policies {
        let publishes = grants.iter().any(|g| {
            g.resource.kind == "google_pubsub_topic_iam_member"
                && g.role == "roles/pubsub.publisher"
                && references(&g.member, agent)
                && references(
                    &g.resource.attribute("topic").unwrap_or_default(),
                    &policy.topic,
                )
        });
        if !publishes {
            problems.push(format!(
                "{}: dead-letters to {}, but the Pub/Sub service agent ({agent}) has no roles/pubsub.publisher on it",
                policy.at, policy.topic
            ));
        }
        let consumes = grants.iter().any(|g| {
            if g.resource.kind != "google_pubsub_subscription_iam_member"
                || g.role != "roles/pubsub.subscriber"
                || !references(&g.member, agent)
            {
                return false;
            }
            let subscription = g.resource.attribute("subscription").unwrap_or_default();
            let for_each = g.resource.attribute("for_each").unwrap_or_default();
            match &policy.subscription {
                Subscription::Resource(name) => {
                    references(&subscription, name) || references(&for_each, name)
                }
                Subscription::Expression {
                    expr,
                    for_each: policy_for_each,
                } => subscription == *expr && for_each == *policy_for_each,
            }
        });
        if !consumes {
            let subscription = match &policy.subscription {
                Subscription::Resource(name) => name.clone(),
                Subscription::Expression { expr, .. } => expr.clone(),
            };
            problems.push(format!(
                "{}: sets a dead-letter policy on {subscription}, but the Pub/Sub service agent ({agent}) has no roles/pubsub.subscriber on it",
                policy.at
            ));
        }
    }
    assert_none(
        "dead-letter policies that would never dead-letter",
        problems,
    );
}

/// The ack deadline each `gcloud pubsub subscriptions update` of `resource`
/// sets (the subscriptions Eventarc makes), `None` where it sets none.
fn ack_deadlines_set(resource: &Resource) -> Vec<(String, Option<u64>)> {
    resource
        .body
        .blocks()
        .filter(|b| b.identifier() == "provisioner")
        .filter_map(|provisioner| attribute(provisioner.body(), "command"))
        .filter(|command| command.contains("pubsub subscriptions update"))
        .map(|command| {
            let seconds = command
                .split_once("--ack-deadline ")
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .and_then(|value| value.trim_end_matches('"').parse().ok());
            (resource.at(), seconds)
        })
        .collect()
}

#[test]
fn every_sender_waits_as_long_as_the_services_take() {
    use lifeboat_shared::server::{PUSH_ACK_DEADLINE, SCHEDULER_ATTEMPT_DEADLINE};
    let resources = terraform();
    let push = PUSH_ACK_DEADLINE.as_secs();
    let scheduler = format!("{}s", SCHEDULER_ATTEMPT_DEADLINE.as_secs());
    let mut problems = Vec::new();
    let mut push_subscriptions = 0;
    let mut jobs = 0;
    for resource in &resources {
        match resource.kind.as_str() {
            "google_pubsub_subscription"
                if resource
                    .body
                    .blocks()
                    .any(|b| b.identifier() == "push_config") =>
            {
                push_subscriptions += 1;
                let seconds = resource.attribute("ack_deadline_seconds");
                if seconds.as_deref() != Some(push.to_string().as_str()) {
                    problems.push(format!(
                        "{}: push subscription with ack_deadline_seconds {seconds:?}, not {push} (PUSH_ACK_DEADLINE)",
                        resource.at()
                    ));
                }
            }
            "google_cloud_scheduler_job" => {
                jobs += 1;
                let deadline = resource.attribute("attempt_deadline");
                if deadline.as_deref() != Some(scheduler.as_str()) {
                    problems.push(format!(
                        "{}: attempt_deadline {deadline:?}, not {scheduler} (SCHEDULER_ATTEMPT_DEADLINE)",
                        resource.at()
                    ));
                }
            }
            _ => {}
        }
        for (at, seconds) in ack_deadlines_set(resource) {
            push_subscriptions += 1;
            if seconds != Some(push) {
                problems.push(format!(
                    "{at}: an Eventarc subscription left at ack deadline {seconds:?} (Eventarc's own is 10 s), not {push} (PUSH_ACK_DEADLINE)"
                ));
            }
        }
    }
    assert!(
        push_subscriptions >= 4 && jobs >= 3,
        "found only {push_subscriptions} push subscriptions and {jobs} Scheduler jobs in infra/*.tf: is the parsing broken?"
    );
    assert_none("sender deadlines", problems);
}

/// The block `path` (identifiers, outermost first) nested in `body`.
fn nested<'b>(body: &'b Body, path: &[&str]) -> &'b Body {
    path.iter().fold(body, |body, identifier| {
        body.blocks()
            .find(|b| b.identifier() == *identifier)
            .unwrap_or_else(|| panic!("no `{identifier}` block"))
            .body()
    })
}

#[test]
fn the_plans_detection_model_is_the_alert_settings() {
    use lifeboat_plan::recovery::{
        ALERT_ALIGNMENT_SECONDS, ALERT_DURATION_SECONDS, UPTIME_CHECK_PERIOD_SECONDS,
    };
    let resources = terraform();
    let find = |kind: &str, name: &str| {
        resources
            .iter()
            .find(|r| r.kind == kind && r.name == name)
            .unwrap_or_else(|| panic!("no {kind}.{name} in infra/"))
    };
    let seconds = |value: f64| format!("{value}s");
    let check = find("google_monitoring_uptime_check_config", "region");
    assert_eq!(
        check.attribute("period"),
        Some(seconds(UPTIME_CHECK_PERIOD_SECONDS)),
        "{}",
        check.at()
    );
    let alert = find("google_monitoring_alert_policy", "region_unreachable");
    let threshold = nested(&alert.body, &["conditions", "condition_threshold"]);
    assert_eq!(
        attribute(threshold, "duration"),
        Some(seconds(ALERT_DURATION_SECONDS)),
        "{}",
        alert.at()
    );
    assert_eq!(
        attribute(nested(threshold, &["aggregations"]), "alignment_period"),
        Some(seconds(ALERT_ALIGNMENT_SECONDS)),
        "{}",
        alert.at()
    );
}
