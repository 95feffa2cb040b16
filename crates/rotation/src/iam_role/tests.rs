//! Trust policies in the shapes AWS documents (IAM User Guide, "AWS JSON policy
//! elements": Principal, Action, Condition; "Access to AWS accounts owned by third
//! parties" for sts:ExternalId), and role ARNs as IAM writes them.

use super::*;
use serde_json::json;

const OWN_ACCOUNT: &str = "123456789012";
const OTHER_ACCOUNT: &str = "999999999999";
const ROLE: &str = "arn:aws:iam::123456789012:role/QoveryAdmin";
const ORG: &str = "3fa85f64-5717-4562-b3fc-2c963f66afa6";
const NO_EXTERNAL_ID: &str = "No external id: any principal allowed above can assume this role, \
     including Qovery acting for another customer who learns its ARN (the confused-deputy \
     problem). See README, Move to an IAM role.";
const QOVERY_SENDS: &str =
    "Qovery's API has no external-id field; the canary shows whether Qovery sends this value";

fn role() -> RoleArn {
    parse_role_arn(ROLE).unwrap()
}

fn policy(statement: Value) -> Value {
    json!({"Version": "2012-10-17", "Statement": statement})
}

fn allow(principal: Value) -> Value {
    json!({"Effect": "Allow", "Principal": principal, "Action": "sts:AssumeRole"})
}

fn report(statement: Value) -> TrustReport {
    analyse_trust(&policy(statement), &role())
}

// ------------------------------------------------------------------ parse_role_arn

#[test]
fn a_role_without_a_path() {
    assert_eq!(
        parse_role_arn(ROLE),
        Ok(RoleArn {
            partition: "aws".to_string(),
            account_id: OWN_ACCOUNT.to_string(),
            path: "/".to_string(),
            name: "QoveryAdmin".to_string(),
        })
    );
}

#[test]
fn a_role_with_a_path_in_another_partition() {
    let role = parse_role_arn(
        "arn:aws-us-gov:iam::123456789012:role/qovery/prod/Qovery+Admin=1,a.b@c-d_e",
    )
    .unwrap();
    assert_eq!(role.partition, "aws-us-gov");
    assert_eq!(role.path, "/qovery/prod/");
    assert_eq!(role.name, "Qovery+Admin=1,a.b@c-d_e");
}

#[test]
fn a_role_name_of_64_characters_is_the_most_iam_allows() {
    let name = "r".repeat(64);
    assert_eq!(
        parse_role_arn(&format!("arn:aws:iam::123456789012:role/{name}")).map(|r| r.name),
        Ok(name.clone())
    );
    let longer = format!("arn:aws:iam::123456789012:role/{name}x");
    assert_eq!(
        parse_role_arn(&longer),
        Err(format!(
            "role ARN {longer:?} has a role name of 65 characters; IAM allows at most 64; \
             expected arn:aws:iam::<12-digit account id>:role/<optional path/>name"
        ))
    );
}

#[test]
fn bad_role_arns_say_what_is_wrong_and_show_the_shape() {
    let expected = "; expected arn:aws:iam::<12-digit account id>:role/<optional path/>name";
    for (arn, what) in [
        (
            "arn:aws:s3::123456789012:role/QoveryAdmin",
            "names service \"s3\", not iam",
        ),
        (
            "arn:aws:iam::12345678901:role/QoveryAdmin",
            "has account \"12345678901\", not 12 digits",
        ),
        (
            "arn:aws:iam::12345678901a:role/QoveryAdmin",
            "has account \"12345678901a\", not 12 digits",
        ),
        (
            "arn:aws:iam::123456789012:role/",
            "has a role path and name of 0 characters, not 1 to 512",
        ),
        (
            "arn:aws:iam::123456789012:role/qovery/",
            "ends with \"/\": the role name is missing",
        ),
        (
            "arn:aws:iam::123456789012:user/qovery",
            "names \"user/qovery\", not a role (role/...)",
        ),
        (
            "arn:aws:iam::123456789012:role",
            "names \"role\", not a role (role/...)",
        ),
        (
            "arn:azure:iam::123456789012:role/QoveryAdmin",
            "has partition \"azure\", not aws, aws-cn, aws-us-gov...",
        ),
        (
            "arn:aws:iam:us-east-1:123456789012:role/QoveryAdmin",
            "names region \"us-east-1\"; IAM ARNs have none",
        ),
        (
            "arn:aws:iam::123456789012:role/Qovery Admin",
            "holds ' '; a role path and name take only letters, digits and _+=,.@/-",
        ),
        (
            "arn:aws:iam::123456789012:role/a:b",
            "holds ':'; a role path and name take only letters, digits and _+=,.@/-",
        ),
        (
            "QoveryAdmin",
            "does not have the six colon-separated fields of an ARN",
        ),
        (
            "urn:aws:iam::123456789012:role/QoveryAdmin",
            "does not start with \"arn:\"",
        ),
    ] {
        assert_eq!(
            parse_role_arn(arn),
            Err(format!("role ARN {arn:?} {what}{expected}")),
            "{arn}"
        );
    }
}

// ------------------------------------------------------------------ decode_trust_policy

#[test]
fn a_url_encoded_document_as_get_role_returns_it() {
    // Byte for byte what moto 5.2.5 answers to GetRole for this policy, encoded as IAM
    // documents it (RFC 3986: a space as %20, "+" as %2B).
    let raw = "%7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%5B%7B%22Effect%22%3A\
               %22Allow%22%2C%22Principal%22%3A%7B%22AWS%22%3A%22arn%3Aaws%3Aiam%3A%3A999999999999\
               %3Aroot%22%7D%2C%22Action%22%3A%22sts%3AAssumeRole%22%2C%22Condition%22%3A%7B\
               %22StringEquals%22%3A%7B%22sts%3AExternalId%22%3A%22a%2Bb%20c%22%7D%7D%7D%5D%7D";
    assert_eq!(
        decode_trust_policy(raw),
        Ok(policy(json!([{
            "Effect": "Allow",
            "Principal": {"AWS": "arn:aws:iam::999999999999:root"},
            "Action": "sts:AssumeRole",
            "Condition": {"StringEquals": {"sts:ExternalId": "a+b c"}},
        }])))
    );
}

#[test]
fn a_document_already_decoded_is_parsed_as_it_is() {
    // Decoding it again would turn "%41" into "A".
    let raw = r#" {"Version":"2012-10-17","Statement":{"Effect":"Allow","Principal":{"AWS":"999999999999"},"Action":"sts:AssumeRole","Condition":{"StringEquals":{"sts:ExternalId":"100%41"}}}} "#;
    let decoded = decode_trust_policy(raw).unwrap();
    assert_eq!(
        decoded["Statement"]["Condition"]["StringEquals"]["sts:ExternalId"],
        "100%41"
    );
}

#[test]
fn a_document_that_is_not_json_is_an_error() {
    assert_eq!(
        decode_trust_policy("%7B%22Version%22%3A"),
        Err(
            "the role's trust policy is not valid JSON: EOF while parsing a value at line 1 column 11"
                .to_string()
        )
    );
    assert_eq!(
        decode_trust_policy("{\"Statement\": [}"),
        Err(
            "the role's trust policy is not valid JSON: expected value at line 1 column 16"
                .to_string()
        )
    );
    assert_eq!(
        decode_trust_policy("%5B%5D"),
        Err("the role's trust policy is JSON but not an object".to_string())
    );
    assert_eq!(
        decode_trust_policy("  "),
        Err("the role's trust policy is empty".to_string())
    );
    assert!(decode_trust_policy("%FF%FE")
        .unwrap_err()
        .starts_with("the role's trust policy is not UTF-8 once URL-decoded: "));
}

// ------------------------------------------------------------------ analyse_trust

#[test]
fn another_accounts_root_may_assume_it() {
    let report = report(json!([allow(
        json!({"AWS": "arn:aws:iam::999999999999:root"})
    )]));
    assert_eq!(
        report,
        TrustReport {
            statements: vec![TrustStatement {
                effect: "Allow".to_string(),
                actions: vec!["sts:AssumeRole".to_string()],
                principals: vec!["AWS:arn:aws:iam::999999999999:root".to_string()],
                conditions: vec![],
                unsupported: vec![],
            }],
            outside_principals: vec!["arn:aws:iam::999999999999:root".to_string()],
            external_id: None,
            wildcard_principal: false,
        }
    );
    assert!(report.lets_outside_assume());
    assert_eq!(
        report.lines(ROLE, ORG),
        vec![
            format!("Trust policy of role {ROLE}:"),
            "allows AWS:arn:aws:iam::999999999999:root to assume it".to_string(),
            NO_EXTERNAL_ID.to_string(),
        ]
    );
}

#[test]
fn a_bare_account_id_and_a_user_of_another_account() {
    let report = report(json!({
        "Effect": "Allow",
        "Principal": {"AWS": [OTHER_ACCOUNT, "arn:aws:iam::888888888888:user/qovery", OWN_ACCOUNT]},
        "Action": ["sts:AssumeRole", "sts:TagSession"],
    }));
    assert_eq!(
        report.outside_principals,
        vec![OTHER_ACCOUNT, "arn:aws:iam::888888888888:user/qovery"]
    );
    assert_eq!(
        report.statements[0].principals,
        vec![
            "AWS:999999999999",
            "AWS:arn:aws:iam::888888888888:user/qovery",
            "AWS:123456789012",
        ]
    );
    assert_eq!(
        report.statements[0].actions,
        vec!["sts:AssumeRole", "sts:TagSession"]
    );
    assert!(report.lets_outside_assume());
}

#[test]
fn the_same_account_only_lets_no_one_outside_assume_it() {
    let report = report(json!([allow(json!({"AWS": [
        "arn:aws:iam::123456789012:root",
        OWN_ACCOUNT,
        "arn:aws:iam::123456789012:role/admin",
        "AROAEXAMPLEDELETEDROLE",
    ]})),]));
    assert_eq!(report.outside_principals, Vec::<String>::new());
    assert!(!report.lets_outside_assume());
    assert_eq!(
        report.lines(ROLE, ORG),
        vec![
            format!("Trust policy of role {ROLE}:"),
            "allows AWS:arn:aws:iam::123456789012:root, AWS:123456789012, \
             AWS:arn:aws:iam::123456789012:role/admin, AWS:AROAEXAMPLEDELETEDROLE to assume it"
                .to_string(),
            "it lets no principal outside account 123456789012 assume it, so Qovery cannot; \
             re-create it with Qovery's CloudFormation template"
                .to_string(),
            NO_EXTERNAL_ID.to_string(),
        ]
    );
}

#[test]
fn a_service_principal_is_no_outside_principal() {
    let report = report(json!(allow(
        json!({"Service": ["ec2.amazonaws.com", "eks.amazonaws.com"]})
    )));
    assert!(!report.lets_outside_assume());
    assert!(!report.wildcard_principal);
    assert_eq!(
        report.statements[0].principals,
        vec!["Service:ec2.amazonaws.com", "Service:eks.amazonaws.com"]
    );
}

#[test]
fn a_wildcard_principal_is_outside_and_gets_its_own_line() {
    for principal in [json!("*"), json!({"AWS": "*"})] {
        let report = report(json!([allow(principal.clone())]));
        assert_eq!(report.outside_principals, vec!["*"], "{principal}");
        assert!(report.wildcard_principal, "{principal}");
        let lines = report.lines(ROLE, ORG);
        assert_eq!(
            lines[1],
            "WARNING: principal \"*\" lets any principal of any AWS account assume this role, \
             stopped only by the conditions below; give Qovery's principal instead."
        );
    }
    assert_eq!(
        report(json!(allow(json!("*")))).statements[0].principals,
        vec!["*"]
    );
}

#[test]
fn only_actions_covering_assume_role_count() {
    for (action, covers) in [
        (json!("sts:AssumeRole"), true),
        (json!("STS:assumerole"), true),
        (json!("sts:*"), true),
        (json!("*"), true),
        (json!("sts:Assume*"), true),
        (json!(["sts:TagSession", "sts:AssumeRole"]), true),
        (json!("sts:AssumeRoleWithWebIdentity"), false),
        (json!("sts:AssumeRoleWith*"), false),
        (json!("sts:TagSession"), false),
        (json!("iam:*"), false),
    ] {
        let report = report(json!({
            "Effect": "Allow",
            "Principal": {"AWS": "arn:aws:iam::999999999999:root"},
            "Action": action,
        }));
        assert_eq!(report.lets_outside_assume(), covers, "{action}");
    }
}

#[test]
fn an_allow_that_is_not_assume_role_names_its_actions() {
    let report = report(json!({
        "Effect": "Allow",
        "Principal": {"Federated": "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com"},
        "Action": "sts:AssumeRoleWithWebIdentity",
    }));
    assert_eq!(
        report.lines(ROLE, ORG)[1],
        "allows Federated:arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com \
         to call sts:AssumeRoleWithWebIdentity"
    );
}

#[test]
fn a_deny_is_reported_not_judged() {
    let report = report(json!([
        allow(json!({"AWS": "arn:aws:iam::999999999999:root"})),
        {
            "Effect": "Deny",
            "Principal": {"AWS": "arn:aws:iam::999999999999:user/intern"},
            "Action": "sts:AssumeRole",
            "Condition": {"Bool": {"aws:MultiFactorAuthPresent": false}},
        },
    ]));
    // The Deny removes no outside principal: only the canary tells whether Qovery's is
    // among those it denies.
    assert_eq!(
        report.outside_principals,
        vec!["arn:aws:iam::999999999999:root"]
    );
    assert_eq!(
        report.lines(ROLE, ORG),
        vec![
            format!("Trust policy of role {ROLE}:"),
            "allows AWS:arn:aws:iam::999999999999:root to assume it".to_string(),
            "Deny sts:AssumeRole for AWS:arn:aws:iam::999999999999:user/intern when Bool \
             aws:MultiFactorAuthPresent = false: not judged: the canary tells"
                .to_string(),
            NO_EXTERNAL_ID.to_string(),
        ]
    );
}

#[test]
fn not_principal_and_not_action_are_kept_as_written() {
    let report = report(json!([
        {
            "Effect": "Allow",
            "NotPrincipal": {"AWS": "arn:aws:iam::999999999999:root"},
            "Action": "sts:AssumeRole",
        },
        {
            "Effect": "Allow",
            "Principal": {"AWS": "arn:aws:iam::888888888888:root"},
            "NotAction": "sts:TagSession",
        },
    ]));
    assert_eq!(
        report.statements[0].unsupported,
        vec![r#"NotPrincipal: {"AWS":"arn:aws:iam::999999999999:root"}"#]
    );
    assert_eq!(
        report.statements[1].unsupported,
        vec![r#"NotAction: "sts:TagSession""#]
    );
    assert!(!report.lets_outside_assume());
    assert_eq!(
        report.lines(ROLE, ORG)[1..3],
        [
            r#"Allow sts:AssumeRole; NotPrincipal: {"AWS":"arn:aws:iam::999999999999:root"}: not judged: the canary tells"#,
            r#"Allow for AWS:arn:aws:iam::888888888888:root; NotAction: "sts:TagSession": not judged: the canary tells"#,
        ]
    );
}

#[test]
fn a_statement_object_and_a_list_of_one_are_the_same() {
    let statement = allow(json!({"AWS": "arn:aws:iam::999999999999:root"}));
    assert_eq!(report(statement.clone()), report(json!([statement])));
    assert_eq!(report(statement).statements.len(), 1);
}

#[test]
fn a_string_equals_external_id() {
    let report = report(json!({
        "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::999999999999:root"},
        "Action": "sts:AssumeRole",
        "Condition": {"StringEquals": {"sts:ExternalId": ORG}},
    }));
    assert_eq!(report.external_id, Some(vec![ORG.to_string()]));
    assert_eq!(
        report.statements[0].conditions,
        vec![TrustCondition {
            operator: "StringEquals".to_string(),
            key: "sts:ExternalId".to_string(),
            values: vec![ORG.to_string()],
        }]
    );
    // The organization id compared case-insensitively.
    assert_eq!(
        report.lines(ROLE, &ORG.to_uppercase()),
        vec![
            format!("Trust policy of role {ROLE}:"),
            format!(
                "allows AWS:arn:aws:iam::999999999999:root to assume it when StringEquals \
                 sts:ExternalId = {ORG}"
            ),
            format!("requires external id {ORG}"),
            "this equals your Qovery organization id".to_string(),
            QOVERY_SENDS.to_string(),
        ]
    );
}

#[test]
fn a_string_like_external_id_list_of_another_value() {
    let report = report(json!({
        "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::999999999999:root"},
        "Action": "sts:AssumeRole",
        "Condition": {
            "StringLike": {"STS:externalid": ["qovery-*", "backup"]},
            "Bool": {"aws:SecureTransport": true},
            "NumericLessThan": {"aws:MultiFactorAuthAge": 3600},
        },
    }));
    assert_eq!(
        report.external_id,
        Some(vec!["qovery-*".to_string(), "backup".to_string()])
    );
    assert_eq!(
        report.lines(ROLE, ORG),
        vec![
            format!("Trust policy of role {ROLE}:"),
            // serde_json keeps object keys sorted: operators in alphabetical order.
            "allows AWS:arn:aws:iam::999999999999:root to assume it when Bool \
             aws:SecureTransport = true and NumericLessThan aws:MultiFactorAuthAge = 3600 and \
             StringLike STS:externalid = qovery-* or backup"
                .to_string(),
            "requires external id qovery-* or backup".to_string(),
            QOVERY_SENDS.to_string(),
        ]
    );
}

#[test]
fn an_external_id_in_one_statement_only_is_said() {
    let report = report(json!([
        {
            "Effect": "Allow",
            "Principal": {"AWS": "arn:aws:iam::999999999999:root"},
            "Action": "sts:AssumeRole",
            "Condition": {"StringEquals": {"sts:ExternalId": "abc"}},
        },
        allow(json!({"AWS": "arn:aws:iam::888888888888:root"})),
    ]));
    assert_eq!(report.external_id, Some(vec!["abc".to_string()]));
    assert_eq!(
        report.lines(ROLE, ORG)[3..],
        [
            "requires external id abc",
            QOVERY_SENDS,
            "but not in every statement: AWS:arn:aws:iam::888888888888:root can assume it without one",
        ]
    );
}

#[test]
fn an_external_id_outside_an_allowing_statement_does_not_count() {
    let report = report(json!([
        allow(json!({"AWS": "arn:aws:iam::999999999999:root"})),
        {
            "Effect": "Deny",
            "Principal": "*",
            "Action": "sts:AssumeRole",
            "Condition": {"StringNotEquals": {"sts:ExternalId": "abc"}},
        },
    ]));
    assert_eq!(report.external_id, None);
    assert!(!report.wildcard_principal);
    assert_eq!(report.lines(ROLE, ORG).last().unwrap(), NO_EXTERNAL_ID);
}

#[test]
fn a_policy_without_statements() {
    let report = analyse_trust(&json!({"Version": "2012-10-17"}), &role());
    assert_eq!(
        report.lines(ROLE, ORG),
        vec![
            format!("Trust policy of role {ROLE}:"),
            "it has no statement: no principal can assume this role".to_string(),
            "it lets no principal outside account 123456789012 assume it, so Qovery cannot; \
             re-create it with Qovery's CloudFormation template"
                .to_string(),
            NO_EXTERNAL_ID.to_string(),
        ]
    );
}

#[test]
fn a_report_goes_through_json_unchanged() {
    let report = report(json!({
        "Effect": "Allow",
        "Principal": {"AWS": "*"},
        "Action": "sts:AssumeRole",
        "Condition": {"StringEquals": {"sts:ExternalId": "abc"}},
    }));
    let text = serde_json::to_string(&report).unwrap();
    assert_eq!(serde_json::from_str::<TrustReport>(&text).unwrap(), report);
    assert_eq!(
        serde_json::to_value(&report).unwrap(),
        json!({
            "statements": [{
                "effect": "Allow",
                "actions": ["sts:AssumeRole"],
                "principals": ["AWS:*"],
                "conditions": [{"operator": "StringEquals", "key": "sts:ExternalId", "values": ["abc"]}],
                "unsupported": [],
            }],
            "outside_principals": ["*"],
            "external_id": ["abc"],
            "wildcard_principal": true,
        })
    );
}
