#!/usr/bin/env bash
# `make migrate-to-role ROLE_ARN=arn:aws:iam::<account>:role/<name> [RUN=1] [STACK=...]`:
# moves Qovery from the static key to an IAM role on the deployed stack (README, "Move to
# an IAM role"). Without RUN=1 a dry run: it prints the plan (the trust policy's
# principals and conditions, each holder's route, the canary) and changes nothing. With
# RUN=1 it starts the migration, with the stack's own execution input, and prints the
# execution to follow: it takes at least the drain (two hours by default).
# Needs the AWS CLI and jq, with credentials for the stack's account.
set -euo pipefail

: "${ROLE_ARN:?set ROLE_ARN to the ARN of the role Qovery should assume (arn:aws:iam::<account>:role/<name>)}"
STACK=${STACK:-qovery-key-rotator}

output() {
  aws cloudformation describe-stacks --stack-name "$STACK" \
    --query "Stacks[0].Outputs[?OutputKey=='$1'].OutputValue" --output text
}
STATE_MACHINE=$(output StateMachineArn)
INPUT=$(output ExecutionInput)
if [ "${RUN:-}" = 1 ]; then
  name=migration
  input=$(echo "$INPUT" | jq -c --arg role "$ROLE_ARN" '.migrate_to_role = {role_arn: $role}')
else
  name=migration-dry-run
  input=$(echo "$INPUT" | jq -c --arg role "$ROLE_ARN" '.dry_run = true | .migrate_to_role = {role_arn: $role}')
fi
EXECUTION=$(aws stepfunctions start-execution --state-machine-arn "$STATE_MACHINE" \
  --name "$name-$(date -u +%Y%m%dT%H%M%SZ)" --input "$input" \
  --query executionArn --output text)
echo "$EXECUTION"
if [ "${RUN:-}" = 1 ]; then
  echo "The migration is under way; it takes at least the drain. Follow it in the Step Functions console, or:"
  echo "  aws stepfunctions describe-execution --execution-arn $EXECUTION --query status --output text"
  exit 0
fi

while status=$(aws stepfunctions describe-execution --execution-arn "$EXECUTION" \
    --query status --output text) && [ "$status" = RUNNING ]; do
  sleep 5
done
echo "$status"
if [ "$status" != SUCCEEDED ]; then
  aws stepfunctions describe-execution --execution-arn "$EXECUTION" --query '[error, cause]' --output text
  exit 1
fi
aws stepfunctions describe-execution --execution-arn "$EXECUTION" --query output --output text \
  | jq -r '.report.summary, "", (.report.migration.holders[]? | "\(.holder.kind) \(.holder.name) (\(.holder.id)): \(.route)")'
