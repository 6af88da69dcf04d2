//! Lua 5.1 compile check, with the real Lua 5.1 compiler (vendored through `mlua`).
//!
//! Nothing is ever executed: a chunk is only compiled into a function and dropped (or dumped).

use mlua::chunk::ChunkMode;
use mlua::{Lua, LuaOptions, StdLib};

/// A source that does not compile as Lua 5.1; the message names the chunk and the line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct CompileError {
    /// The compiler's message, e.g. `main.lua:3: '=' expected near 'x'`.
    pub message: String,
}

thread_local! {
    // One bare state per thread (no standard libraries: compiling needs none).
    static LUA: Lua = Lua::new_with(StdLib::NONE, LuaOptions::new())
        .expect("a Lua state without libraries can always be created");
}

fn with_function<T>(
    name: &str,
    src: &[u8],
    f: impl FnOnce(&mlua::Function) -> T,
) -> Result<T, CompileError> {
    LUA.with(|lua| {
        lua.load(src)
            .set_name(format!("@{name}"))
            .set_mode(ChunkMode::Text)
            .into_function()
            .map(|func| f(&func))
            .map_err(|e| CompileError {
                message: match e {
                    mlua::Error::SyntaxError { message, .. } => message,
                    other => other.to_string(),
                },
            })
    })
}

/// Checks that `src` compiles as Lua 5.1 source; `name` is used in the error message.
pub fn check(name: &str, src: &[u8]) -> Result<(), CompileError> {
    with_function(name, src, |_| ())
}

/// Compiles `src` and returns its Lua 5.1 bytecode with debug information (what `node.compile` stores).
pub fn compile(name: &str, src: &[u8]) -> Result<Vec<u8>, CompileError> {
    with_function(name, src, |func| func.dump(false))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_source_compiles_without_running() {
        check("ok.lua", b"error('never runs')\nlocal x = 1\nreturn x").unwrap();
        let code = compile("ok.lua", b"return 1").unwrap();
        assert_eq!(&code[..4], b"\x1bLua");
        assert_eq!(code[4], 0x51, "Lua 5.1 bytecode");
    }

    #[test]
    fn errors_name_file_and_line() {
        let err = check("lib/bad.lua", b"local a = 1\nlocal = 2\n").unwrap_err();
        assert!(err.message.starts_with("lib/bad.lua:2:"), "{}", err.message);
    }

    #[test]
    fn lua51_not_later_syntax() {
        // `goto` and integer division are Lua 5.2+/5.3+: a 5.1 device cannot compile them.
        assert!(check("g.lua", b"goto done\n::done::\n").is_err());
        assert!(check("d.lua", b"return 7 // 2").is_err());
        // 5.1 refuses nested level-0 long brackets.
        assert!(check("n.lua", b"x = [[ a [[ b ]] ]]").is_err());
    }

    #[test]
    fn bytecode_is_refused_as_source() {
        let code = compile("ok.lua", b"return 1").unwrap();
        assert!(check("evil.lua", &code).is_err());
    }
}
