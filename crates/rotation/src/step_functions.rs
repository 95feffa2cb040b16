//! Step Functions: the guard against two rotations of the same user at once.

use aws_sdk_sfn::types::ExecutionStatus;
use aws_sdk_sfn::Client;
use serde_json::Value;

use crate::aws::AwsError;

/// The ARNs of the other RUNNING executions of `state_machine_arn` whose input
/// targets `iam_user_name`.
pub async fn running_rotations_for_user(
    sfn: &Client,
    state_machine_arn: &str,
    own_execution_arn: &str,
    iam_user_name: &str,
) -> Result<Vec<String>, AwsError> {
    let mut others = Vec::new();
    let mut pages = sfn
        .list_executions()
        .state_machine_arn(state_machine_arn)
        .status_filter(ExecutionStatus::Running)
        .into_paginator()
        .send();
    crate::deadline::ensure_time_for("states:ListExecutions")?;
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| AwsError::from_sdk("states:ListExecutions", e))?;
        for execution in page.executions() {
            let arn = execution.execution_arn();
            if arn != own_execution_arn {
                others.push(arn.to_string());
            }
        }
    }

    let mut same_user = Vec::new();
    for arn in others {
        crate::deadline::ensure_time_for("states:DescribeExecution")?;
        let described = sfn
            .describe_execution()
            .execution_arn(&arn)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("states:DescribeExecution", e))?;
        let input: Option<Value> = described.input().and_then(|i| serde_json::from_str(i).ok());
        let user = input
            .as_ref()
            .and_then(|i| i.get("iam_user_name"))
            .and_then(Value::as_str);
        if user == Some(iam_user_name) {
            same_user.push(arn);
        }
    }
    Ok(same_user)
}
