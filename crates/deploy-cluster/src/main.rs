//! Lambda entry point for the `deploy-cluster` step. Wiring only: the logic is in
//! `rotation::steps::deploy_cluster`.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    rotation::lambda::serve(rotation::steps::deploy_cluster::handle).await
}
