//! Lambda entry point for the `create-key` step. Wiring only: the logic is in
//! `rotation::steps::create_key`.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    rotation::lambda::serve(rotation::steps::create_key::handle).await
}
