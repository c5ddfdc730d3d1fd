//! v0 types (`&T`, `[T; N]`, tuples, `fn(…) -> R`, `dyn Trait`) and constants.

use super::V0;

impl V0<'_, '_, '_> {
    pub(super) fn type_(&mut self) -> Option<()> {
        let tag = self.peek();
        if let Some(name) = basic_type(tag) {
            self.pos += 1;
            self.print(name.as_bytes());
            return Some(());
        }
        self.nested(|v| v.type_inner())
    }

    fn type_inner(&mut self) -> Option<()> {
        match self.next()? {
            tag @ (b'R' | b'Q') => {
                self.print(b"&");
                if self.eat(b'L') {
                    let lt = self.base62()?;
                    if lt != 0 {
                        self.lifetime(lt)?;
                        self.print(b" ");
                    }
                }
                if tag == b'Q' {
                    self.print(b"mut ");
                }
                self.type_()?;
            }
            tag @ (b'P' | b'O') => {
                self.print(if tag == b'P' { b"*const " } else { b"*mut " });
                self.type_()?;
            }
            tag @ (b'A' | b'S') => {
                self.print(b"[");
                self.type_()?;
                if tag == b'A' {
                    self.print(b"; ");
                    self.constant()?;
                }
                self.print(b"]");
            }
            b'T' => {
                self.print(b"(");
                if self.list(b", ", Self::type_)? == 1 {
                    self.print(b",");
                }
                self.print(b")");
            }
            b'F' => self.binder(Self::fn_sig)?,
            b'D' => {
                self.print(b"dyn ");
                self.binder(|v| v.list(b" + ", Self::dyn_trait).map(drop))?;
                if !self.eat(b'L') {
                    return None;
                }
                let lt = self.base62()?;
                if lt != 0 {
                    self.print(b" + ");
                    self.lifetime(lt)?;
                }
            }
            b'B' => self.backref(Self::type_)?,
            _ => {
                self.pos -= 1; // a path: let it see its tag
                self.path(false)?;
            }
        }
        Some(())
    }

    /// `[U] [K <abi>] {<type>} E <return type>`.
    fn fn_sig(&mut self) -> Option<()> {
        let is_unsafe = self.eat(b'U');
        let abi = if !self.eat(b'K') {
            None
        } else if self.eat(b'C') {
            Some(&b"C"[..])
        } else {
            let len = self.decimal()?;
            self.eat(b'_');
            let abi = self.s.get(self.pos..self.pos.checked_add(len)?).filter(|a| !a.is_empty())?;
            self.pos += len;
            Some(abi)
        };
        if is_unsafe {
            self.print(b"unsafe ");
        }
        if let Some(abi) = abi {
            // `-` in ABI names was mangled as `_`.
            self.print(b"extern \"");
            for (i, part) in abi.split(|&b| b == b'_').enumerate() {
                if i > 0 {
                    self.print(b"-");
                }
                self.print(part);
            }
            self.print(b"\" ");
        }
        self.print(b"fn(");
        self.list(b", ", Self::type_)?;
        self.print(b")");
        if !self.eat(b'u') {
            self.print(b" -> ");
            self.type_()?;
        }
        Some(())
    }

    /// A trait path with its generic arguments and `p <name> <type>` associated types.
    fn dyn_trait(&mut self) -> Option<()> {
        let mut open = self.path_maybe_open_generics()?;
        while self.eat(b'p') {
            self.print(if open { b", " } else { b"<" });
            open = true;
            let (_, name) = self.ident()?;
            self.print(name);
            self.print(b" = ");
            self.type_()?;
        }
        if open {
            self.print(b">");
        }
        Some(())
    }

    /// A path whose generic argument list, if any, is left open; whether it is.
    fn path_maybe_open_generics(&mut self) -> Option<bool> {
        if self.eat(b'B') {
            let mut open = false;
            self.backref(|v| {
                open = v.path_maybe_open_generics()?;
                Some(())
            })?;
            Some(open)
        } else if self.eat(b'I') {
            self.path(false)?;
            self.print(b"<");
            self.list(b", ", Self::generic_arg)?;
            Some(true)
        } else {
            self.path(false)?;
            Some(false)
        }
    }

    /// A constant generic argument or array length.
    pub(super) fn constant(&mut self) -> Option<()> {
        self.nested(|v| match v.next()? {
            b'p' => {
                v.print(b"_");
                Some(())
            }
            b'h' | b't' | b'm' | b'y' | b'o' | b'j' => v.const_uint(),
            b'a' | b's' | b'l' | b'x' | b'n' | b'i' => {
                if v.eat(b'n') {
                    v.print(b"-");
                }
                v.const_uint()
            }
            b'b' => {
                let text: &[u8] = match v.hex_value()? {
                    Some(0) => b"false",
                    Some(1) => b"true",
                    _ => return None,
                };
                v.print(text);
                Some(())
            }
            b'c' => {
                let c = v
                    .hex_value()?
                    .filter(|c| (0x20..0x7f).contains(c) && *c != b'\'' as u64 && *c != b'\\' as u64)?;
                v.print(&[b'\'', c as u8, b'\'']);
                Some(())
            }
            b'B' => v.backref(Self::constant),
            _ => None,
        })
    }

    /// An unsigned value in hex nibbles: decimal, or `0x…` if it does not fit 64 bits.
    fn const_uint(&mut self) -> Option<()> {
        let start = self.pos;
        match self.hex_value()? {
            Some(v) => self.print_dec(v),
            None => {
                let nibbles = self.s.get(start..self.pos.checked_sub(1)?)?;
                self.print(b"0x");
                self.print(nibbles);
            }
        }
        Some(())
    }

    /// `{hex digit} _`: Some(value), or Some(None) when it has more than 64 bits.
    fn hex_value(&mut self) -> Option<Option<u64>> {
        let mut v: Option<u64> = Some(0);
        loop {
            let d = match self.next()? {
                b'_' => return Some(v),
                c @ b'0'..=b'9' => c - b'0',
                c @ b'a'..=b'f' => c - b'a' + 10,
                _ => return None,
            };
            v = v.and_then(|v| v.checked_mul(16)).and_then(|v| v.checked_add(d as u64));
        }
    }
}

fn basic_type(tag: u8) -> Option<&'static str> {
    Some(match tag {
        b'a' => "i8",
        b'b' => "bool",
        b'c' => "char",
        b'd' => "f64",
        b'e' => "str",
        b'f' => "f32",
        b'h' => "u8",
        b'i' => "isize",
        b'j' => "usize",
        b'l' => "i32",
        b'm' => "u32",
        b'n' => "i128",
        b'o' => "u128",
        b's' => "i16",
        b't' => "u16",
        b'u' => "()",
        b'v' => "...",
        b'x' => "i64",
        b'y' => "u64",
        b'z' => "!",
        b'p' => "_",
        _ => return None,
    })
}
