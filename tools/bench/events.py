"""The event each step gets in the benchmark: what statemachine/rotation.asl.json hands
the function at that point of a real rotation. Built from the world (an IAM user, its
Qovery credentials, one cluster) and the outputs of the steps before it.

This is the one place to update when a step's input changes shape. Each builder mirrors
the ASL state that invokes the function: `Parameters`, the Map's `ItemSelector`, or the
previous state's output passed through as-is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Rotation order: each step may read the outputs of the ones before it.
FUNCTIONS = ["preflight", "create-key", "update-qovery", "deploy-cluster", "check-status", "delete-key"]


@dataclass
class World:
    """One rotation's worth of outside state, seeded before the first step runs."""

    iam_user_name: str
    organization_id: str
    credentials_id: str
    cluster_id: str
    execution_arn: str
    state_machine_arn: str
    # Step name -> what that function returned for this world.
    outputs: dict[str, Any] = field(default_factory=dict)


def execution_input(w: World) -> dict:
    """The execution input (crates/rotation/src/input.rs, `ExecutionInput`). The
    defaults a deployment uses: a 2-hour drain, polls every 60 s."""
    return {
        "iam_user_name": w.iam_user_name,
        "organization_id": w.organization_id,
        "credentials_id": w.credentials_id,
    }


def preflight(w: World) -> dict:
    # ASL Preflight.Parameters: the execution input and two context-object ids.
    return {"input": execution_input(w), "execution_id": w.execution_arn, "state_machine_arn": w.state_machine_arn}


def create_key(w: World) -> dict:
    # IsDryRun passes Preflight's output (the RotationState) through unchanged.
    return w.outputs["preflight"]


def update_qovery(w: World) -> dict:
    # ASL UpdateQovery.Parameters: the mode, and CreateKey's output as the state.
    return {"mode": "hand_over", "state": w.outputs["create-key"]}


def deploy_cluster(w: World) -> dict:
    # ASL DeployClusters.ItemSelector, for the Map item of w.cluster_id (a ClusterPlan).
    state = w.outputs["update-qovery"]
    item = next(c for c in state["clusters"] if c["id"] == w.cluster_id)
    return {
        "organization_id": state["organization_id"],
        "cluster_id": item["id"],
        "cluster_name": item["name"],
        "baseline_status": item["handover_status"],
        "baseline_execution_id": item["handover_execution_id"],
        "baseline_deployment_date": item["handover_deployment_date"],
        "poll_interval_seconds": state["poll_interval_seconds"],
        "deploy_timeout_seconds": state["deploy_timeout_seconds"],
        "iam_user_name": state["iam_user_name"],
        "old_access_key_id": state["old_access_key_id"],
        "new_access_key_id": state["new_access_key_id"],
    }


def check_status(w: World) -> dict:
    # WaitForDeploy passes DeployCluster's output through unchanged.
    return w.outputs["deploy-cluster"]


def delete_key(w: World) -> dict:
    # ASL DeleteOldKey.Parameters, after the drain.
    state = w.outputs["update-qovery"]
    return {
        "mode": "retire_old_key",
        "execution_id": w.execution_arn,
        "iam_user_name": state["iam_user_name"],
        "organization_id": state["organization_id"],
        "old_access_key_id": state["old_access_key_id"],
        "new_access_key_id": state["new_access_key_id"],
        "key_secret_id": state["key_secret_id"],
        "holders": state["holders"],
    }


BUILDERS = {
    "preflight": preflight,
    "create-key": create_key,
    "update-qovery": update_qovery,
    "deploy-cluster": deploy_cluster,
    "check-status": check_status,
    "delete-key": delete_key,
}


def event(function: str, w: World) -> dict:
    return BUILDERS[function](w)
