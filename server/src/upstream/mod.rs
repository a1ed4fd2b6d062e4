//! One module per account type: which URL, which headers, how the credential is presented.

pub mod claude_console;
