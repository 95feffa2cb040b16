//! Lambda entry point for the `check-status` step (CheckStatus and CheckWave). Wiring
//! only: the logic is in `rotation::steps::check_status` and `check_wave`.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    rotation::lambda::serve(rotation::steps::check_status::serve_either).await
}
