//! Lambda entry point for the `preflight` step. Wiring only: the logic is in
//! `rotation::steps::preflight`.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    rotation::lambda::serve(rotation::steps::preflight::handle).await
}
