//! What the session needs from the device's file store.

/// The device's file store, as the v1 session uses it. The caller maps it onto rota's store: `put`
/// stages a file beside the old one (checked against `digest`), and the caller commits everything staged
/// at once only when the session ends in [`Outcome::Restart`](crate::Outcome::Restart); on any other end
/// it discards what was staged. `rename` and `delete` should be staged the same way.
pub trait V1Store {
    /// The store's own error.
    type Error;

    /// Writes the whole file `name` (replacing any file of that name); `digest` is SHA-256 of `data`.
    fn put(&mut self, name: &[u8], data: &[u8], digest: &[u8; 32]) -> Result<(), Self::Error>;

    /// Renames `from` to `to`, replacing `to`.
    fn rename(&mut self, from: &[u8], to: &[u8]) -> Result<(), Self::Error>;

    /// Deletes `name`.
    fn delete(&mut self, name: &[u8]) -> Result<(), Self::Error>;

    /// The size of `name`, or `None` if there is no such file.
    fn size(&mut self, name: &[u8]) -> Option<u32>;

    /// The `index`-th file (from 0) and its size, or `None` past the last one.
    fn list(&mut self, index: usize) -> Option<(&[u8], u32)>;

    /// Reads bytes of `name` from `offset` into `buf`; returns how many (0 at the end of the file).
    fn read(&mut self, name: &[u8], offset: u32, buf: &mut [u8]) -> Result<usize, Self::Error>;
}

impl<T: V1Store + ?Sized> V1Store for &mut T {
    type Error = T::Error;

    fn put(&mut self, name: &[u8], data: &[u8], digest: &[u8; 32]) -> Result<(), Self::Error> {
        (**self).put(name, data, digest)
    }

    fn rename(&mut self, from: &[u8], to: &[u8]) -> Result<(), Self::Error> {
        (**self).rename(from, to)
    }

    fn delete(&mut self, name: &[u8]) -> Result<(), Self::Error> {
        (**self).delete(name)
    }

    fn size(&mut self, name: &[u8]) -> Option<u32> {
        (**self).size(name)
    }

    fn list(&mut self, index: usize) -> Option<(&[u8], u32)> {
        (**self).list(index)
    }

    fn read(&mut self, name: &[u8], offset: u32, buf: &mut [u8]) -> Result<usize, Self::Error> {
        (**self).read(name, offset, buf)
    }
}
