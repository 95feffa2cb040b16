//! Lambda entry point for the `check-status` step. Wiring only: the logic is in
//! `rotation::steps::check_status`.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    rotation::lambda::serve(rotation::steps::check_status::handle).await
}
