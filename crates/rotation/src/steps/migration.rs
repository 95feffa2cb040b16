//! The plan of a move of Qovery from the static key to an IAM role (`migrate_to_role`),
//! made by preflight and read-only: the role exists in this account, its trust policy
//! lets a principal of another account assume it (what the report says about its
//! principals, conditions and external id), every holder of the key and how it would
//! move (its `RoleRoute`), and the clusters, canary first. Anything that cannot move is
//! refused here, all named in one message.

use crate::config::Deps;
use crate::error::RotationError;
use crate::iam;
use crate::iam_role::{self, RoleArn};
use crate::input::ExecutionInput;
use crate::qovery::holders::{self, RoleRoute};
use crate::qovery::{Holder, HolderKind, Holding};
use crate::state::{
    describe_keys, ClusterPlan, KeySummary, MigrationReport, RoutedHolder, SkippedCluster,
};

const NOTHING_CHANGED: &str = "Nothing was changed.";

/// The role, read with `iam:GetRole`, and its trust policy judged.
pub async fn check_role(
    deps: &Deps,
    input: &ExecutionInput,
    role_arn: &str,
) -> Result<(RoleArn, iam_role::TrustReport, Vec<String>), RotationError> {
    let role = iam_role::parse_role_arn(role_arn).map_err(RotationError::InvalidInput)?;
    let found = iam::get_role(&deps.iam, &role.name).await.map_err(|e| {
        if e.is_code("NoSuchEntity") {
            RotationError::PreconditionFailed(format!(
                "Role {role_arn} does not exist in account {} (iam:GetRole {} answered NoSuchEntity). Create it with \
                 Qovery's CloudFormation template (linked from the Qovery console's credentials form, \"STS Assume \
                 Role\"), copy the role ARN from the stack's Outputs, and start again. {NOTHING_CHANGED}",
                role.account_id, role.name
            ))
        } else {
            e.into_rotation_error(&format!(
                "Preflight reads the role with iam:GetRole, granted only on the role named by the stack's \
                 QoveryRoleName parameter: deploy the stack with QoveryRoleName={}. {NOTHING_CHANGED}",
                role.name
            ))
        }
    })?;
    if found.arn != role_arn {
        return Err(RotationError::PreconditionFailed(format!(
            "Role {role_arn} is not the role this account has under the name {}: that is {}. The role must be in \
             the account of IAM user {} (the stack's account), with the same path; check migrate_to_role.role_arn. \
             {NOTHING_CHANGED}",
            role.name, found.arn, input.iam_user_name
        )));
    }
    let policy = iam_role::decode_trust_policy(&found.trust_policy_raw).map_err(|why| {
        RotationError::AwsRejected(format!(
            "The trust policy IAM gives for role {role_arn} cannot be read: {why}. {NOTHING_CHANGED}"
        ))
    })?;
    let trust = iam_role::analyse_trust(&policy, &role);
    let lines = trust.lines(role_arn, &input.organization_id);
    if !trust.lets_outside_assume() {
        return Err(RotationError::PreconditionFailed(format!(
            "Qovery could not assume role {role_arn}. {} {NOTHING_CHANGED}",
            lines.join(" ")
        )));
    }
    Ok((role, trust, lines))
}

/// The static key Qovery holds (named by `credentials_id`, or the one key of the user
/// that Qovery holds), every holder of it and how each moves. Refuses, naming all of
/// them, holders that cannot move or hide their key id.
pub fn plan<'a>(
    input: &ExecutionInput,
    role_arn: &str,
    all: &'a [Holder],
    keys: &[KeySummary],
) -> Result<(String, Vec<&'a Holder>, Vec<RoutedHolder>), RotationError> {
    let user = &input.iam_user_name;
    let held: Vec<&KeySummary> = keys
        .iter()
        .filter(|k| all.iter().any(|h| h.holds(&k.access_key_id)))
        .collect();
    let key = match (&input.credentials_id, held.as_slice()) {
        (Some(id), _) => {
            let entry = all
                .iter()
                .find(|h| h.kind == HolderKind::Credentials && h.id.eq_ignore_ascii_case(id));
            match entry.map(|e| &e.holding) {
                Some(Holding::Key(k)) if keys.iter().any(|mine| &mine.access_key_id == k) => k.clone(),
                _ => {
                    return Err(RotationError::PreconditionFailed(format!(
                        "credentials_id {id} names no static credentials holding a key of IAM user {user} (the \
                         user's keys: {}; the organization's credentials: {}). Fix credentials_id, or leave it out. \
                         {NOTHING_CHANGED}",
                        describe_keys(keys),
                        holders::describe_all(all.iter().filter(|h| h.kind == HolderKind::Credentials))
                    )))
                }
            }
        }
        (None, [one]) => one.access_key_id.clone(),
        (None, _) => {
            return Err(RotationError::PreconditionFailed(format!(
                "A migration retires the one key of IAM user {user} that Qovery holds; Qovery holds {} of the \
                 user's keys ({}). Name the credentials with credentials_id, or move the others first. \
                 {NOTHING_CHANGED}",
                held.len(),
                describe_keys(keys)
            )))
        }
    };

    let holding = holders::holding(all, &key);
    let unreadable = holders::unreadable(all);
    let refused: Vec<String> = holding
        .iter()
        .filter_map(|h| match h.role_route() {
            RoleRoute::Refused(why) => Some(format!("{} ({why})", h.label())),
            _ => None,
        })
        .chain(unreadable.iter().map(|h| {
            format!(
                "{} (Qovery does not show which key it holds: it could hold {key}, which the migration deletes at \
                 the end; check it in the Qovery console)",
                h.label()
            )
        }))
        .collect();
    if !refused.is_empty() {
        return Err(RotationError::PreconditionFailed(format!(
            "A move of Qovery to role {role_arn} cannot move these, and deleting key {key} later would break them: \
             {}. Then start again. {NOTHING_CHANGED}",
            refused.join("; ")
        )));
    }
    let routed = holding
        .iter()
        .map(|h| RoutedHolder {
            holder: h.to_ref(),
            route: h.role_route(),
        })
        .collect();
    Ok((key, holding, routed))
}

/// The dry run's words for a migration.
pub fn summary(
    input: &ExecutionInput,
    report: &MigrationReport,
    clusters: &[ClusterPlan],
    skipped: &[SkippedCluster],
) -> String {
    let routed = |wanted: fn(&RoleRoute) -> bool| {
        report
            .holders
            .iter()
            .filter(|h| wanted(&h.route))
            .map(|h| h.holder.label())
            .collect::<Vec<_>>()
    };
    let entries = routed(|r| *r == RoleRoute::MoveClusters);
    let switched = routed(|r| *r == RoleRoute::SwitchToRole);
    let named = |c: &ClusterPlan| format!("{} ({}, {})", c.name, c.id, c.status);
    let (canary, rest) = clusters
        .split_first()
        .expect("a migration plans a running cluster");
    let entry = if report.role_credentials_before.is_empty() {
        "create AWS_ROLE credentials for it".to_string()
    } else {
        format!(
            "use the AWS_ROLE credentials that already name it ({})",
            report.role_credentials_before.join(", ")
        )
    };
    let mut text = format!(
        "{}Move of Qovery from IAM user {}'s key {} to role {}: {entry}; point the \
         canary cluster {} at them alone and redeploy it (DEPLOYED proves Qovery can assume the role; on a failure \
         it is pointed back at its static credentials and redeployed, and nothing else changes)",
        if input.dry_run { "Dry run, nothing was changed. " } else { "" },
        input.iam_user_name,
        report.static_access_key_id,
        report.role_arn,
        named(canary),
    );
    if !rest.is_empty() {
        text.push_str(&format!(
            "; then the other {} cluster(s), at most {} at a time: {}",
            rest.len(),
            input.deploy_concurrency,
            rest.iter().map(named).collect::<Vec<_>>().join(", ")
        ));
    }
    if !skipped.is_empty() {
        text.push_str(&format!(
            "; point the clusters that are not running at the role without a deploy: {}",
            skipped
                .iter()
                .map(|c| format!("{} ({}, {})", c.name, c.id, c.status))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if !switched.is_empty() {
        text.push_str(&format!(
            "; once every cluster is DEPLOYED on the role, switch to it: {} (from then on there is no way back \
             to the key)",
            switched.join("; ")
        ));
    }
    text.push_str(&format!(
        "; wait a drain of {} s; delete the static credentials {} once no cluster uses them; switch off, then \
         delete key {}. ",
        input.drain_seconds,
        entries.join("; "),
        report.static_access_key_id
    ));
    text.push_str(&if report.other_user_keys.is_empty() {
        format!(
            "IAM user {} then has no access key; this tool never deletes users. ",
            input.iam_user_name
        )
    } else {
        format!(
            "IAM user {} keeps its other key(s), which Qovery does not hold: {}. ",
            input.iam_user_name,
            report.other_user_keys.join(", ")
        )
    });
    text.push_str(&report.trust_lines.join(" "));
    text
}
