fn main() -> std::process::ExitCode {
    vcw::cli::main()
}
