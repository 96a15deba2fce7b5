fn main() -> std::process::ExitCode {
    hft::cli::main()
}
