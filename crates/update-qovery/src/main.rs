//! Lambda entry point for the `update-qovery` step. Wiring only: the logic is in
//! `rotation::steps::update_qovery`.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    rotation::lambda::serve(rotation::steps::update_qovery::handle).await
}
