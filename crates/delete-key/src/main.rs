//! Lambda entry point for the `delete-key` step. Wiring only: the logic is in
//! `rotation::steps::delete_key`.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    rotation::lambda::serve(rotation::steps::delete_key::serve_either).await
}
