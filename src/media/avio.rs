//! Demuxing with FFmpeg from any [`Read`] + [`Seek`] object instead of a path.
//!
//! Why: the service must never write decrypted video to disk. The caller
//! hands us a reader that decrypts on the fly, and FFmpeg pulls bytes from it
//! through its custom I/O API (`avio_alloc_context` with read/seek callbacks,
//! `AVFMT_FLAG_CUSTOM_IO`, `avformat_open_input` with a null URL), so no
//! plaintext ever touches the filesystem.
//!
//! Ownership: three resources live behind raw pointers and must be released in
//! this order:
//! 1. the `AVFormatContext` (`avformat_close_input`; with
//!    `AVFMT_FLAG_CUSTOM_IO` set it does *not* touch `pb`, but a demuxer's
//!    `read_close` may still look at it, so `pb` must outlive it);
//! 2. the `AVIOContext` and its buffer (FFmpeg may have reallocated the buffer,
//!    so `(*pb).buffer` is freed, not the pointer we passed in);
//! 3. the boxed Rust reader that `pb->opaque` points to.

use std::ffi::{c_int, c_void};
use std::io::{self, Read, Seek, SeekFrom};
use std::mem::ManuallyDrop;
use std::ops::{Deref, DerefMut};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::ptr;
use std::rc::Rc;

use ffmpeg_next::Error;
use ffmpeg_next::ffi;
use ffmpeg_next::format::context::Input;

/// Size of the I/O buffer handed to FFmpeg (64 KiB).
const IO_BUFFER_SIZE: usize = 64 * 1024;

/// Anything FFmpeg can demux from: readable, seekable (MP4 with the `moov`
/// atom at the end cannot be opened without seeking) and movable to another
/// thread together with the [`ReaderInput`] that owns it.
pub trait ReadSeek: Read + Seek + Send {}
impl<T: Read + Seek + Send> ReadSeek for T {}

/// State reachable from FFmpeg through `AVIOContext::opaque`.
///
/// A `Box<dyn ReadSeek>` is a fat pointer and cannot be squeezed into a
/// `void *`, hence this thin wrapper.
struct IoState {
    reader: Box<dyn ReadSeek>,
    /// Total stream size, computed on the first `AVSEEK_SIZE` request.
    size: Option<i64>,
    /// Set if the reader panicked; afterwards it may be in an inconsistent
    /// state, so every further request fails instead of touching it.
    poisoned: bool,
}

/// Maps an I/O error to a negative AVERROR code.
fn io_error_to_averror(err: &io::Error) -> c_int {
    match err.kind() {
        io::ErrorKind::UnexpectedEof => ffi::AVERROR_EOF,
        _ => match err.raw_os_error() {
            Some(errno) if errno > 0 => ffi::AVERROR(errno),
            _ => ffi::AVERROR(ffi::EIO),
        },
    }
}

/// `read_packet` callback: fills `buf` with up to `buf_size` bytes.
///
/// Returns the number of bytes read, `AVERROR_EOF` at end of stream (a return
/// of 0 is deprecated as an EOF signal and only warned about), or another
/// negative AVERROR on failure.
/// Never unwinds into C: a panicking reader is caught and reported as `EIO`.
unsafe extern "C" fn read_packet(opaque: *mut c_void, buf: *mut u8, buf_size: c_int) -> c_int {
    if opaque.is_null() || buf.is_null() || buf_size < 0 {
        return ffi::AVERROR(ffi::EINVAL);
    }
    if buf_size == 0 {
        return 0;
    }
    // SAFETY: `opaque` is the `IoState` installed by `CustomIo::new`; it
    // outlives the AVIOContext and FFmpeg calls the callbacks from one thread
    // at a time (the one driving the format context), so no aliasing `&mut`.
    let state = unsafe { &mut *opaque.cast::<IoState>() };
    if state.poisoned {
        return ffi::AVERROR(ffi::EIO);
    }
    // SAFETY: FFmpeg guarantees `buf` is valid for `buf_size` writable bytes.
    let out = unsafe { std::slice::from_raw_parts_mut(buf, buf_size as usize) };
    let result = catch_unwind(AssertUnwindSafe(|| {
        loop {
            match state.reader.read(out) {
                Ok(0) => return ffi::AVERROR_EOF,
                // n <= out.len() <= c_int::MAX, so the cast is lossless.
                Ok(n) => return n as c_int,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return io_error_to_averror(&e),
            }
        }
    }));
    result.unwrap_or_else(|_| {
        state.poisoned = true;
        ffi::AVERROR(ffi::EIO)
    })
}

/// Returns the total stream size, measuring it once (seek to end and back)
/// and caching it, because FFmpeg asks for it repeatedly.
fn stream_size(state: &mut IoState) -> io::Result<i64> {
    if let Some(size) = state.size {
        return Ok(size);
    }
    let reader = &mut state.reader;
    let current = reader.stream_position()?;
    let end = reader.seek(SeekFrom::End(0))?;
    reader.seek(SeekFrom::Start(current))?;
    let size = i64::try_from(end).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
    state.size = Some(size);
    Ok(size)
}

/// Performs one seek request on behalf of FFmpeg.
fn seek_state(state: &mut IoState, offset: i64, whence: c_int) -> io::Result<i64> {
    // AVSEEK_FORCE is only a hint ("seek even if expensive"); ignore it.
    let whence = whence & !ffi::AVSEEK_FORCE;
    let target = match whence {
        ffi::AVSEEK_SIZE => return stream_size(state),
        ffi::SEEK_SET => SeekFrom::Start(
            u64::try_from(offset).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?,
        ),
        ffi::SEEK_CUR => SeekFrom::Current(offset),
        ffi::SEEK_END => SeekFrom::End(offset),
        _ => return Err(io::Error::from(io::ErrorKind::InvalidInput)),
    };
    let pos = state.reader.seek(target)?;
    i64::try_from(pos).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))
}

/// `seek` callback: supports `SEEK_SET`, `SEEK_CUR`, `SEEK_END` and
/// `AVSEEK_SIZE`. Returns the new position (or the size), or a negative
/// AVERROR. Never unwinds into C.
unsafe extern "C" fn seek(opaque: *mut c_void, offset: i64, whence: c_int) -> i64 {
    if opaque.is_null() {
        return i64::from(ffi::AVERROR(ffi::EINVAL));
    }
    // SAFETY: see `read_packet`.
    let state = unsafe { &mut *opaque.cast::<IoState>() };
    if state.poisoned {
        return i64::from(ffi::AVERROR(ffi::EIO));
    }
    match catch_unwind(AssertUnwindSafe(|| seek_state(state, offset, whence))) {
        Ok(Ok(pos)) => pos,
        Ok(Err(e)) => i64::from(io_error_to_averror(&e)),
        Err(_) => {
            state.poisoned = true;
            i64::from(ffi::AVERROR(ffi::EIO))
        }
    }
}

/// Owns the `AVIOContext`, its buffer and the reader behind `opaque`.
///
/// Kept separate from the format context so that every failure path in
/// [`ReaderInput::open`] releases exactly what was allocated so far.
struct CustomIo {
    ctx: *mut ffi::AVIOContext,
    state: *mut IoState,
}

// SAFETY: the AVIOContext is plain heap memory not tied to a thread, and the
// reader is `Send` by the `ReadSeek` bound. Nothing here is shared.
unsafe impl Send for CustomIo {}

impl CustomIo {
    fn new(reader: Box<dyn ReadSeek>) -> Result<Self, Error> {
        let state = Box::into_raw(Box::new(IoState {
            reader,
            size: None,
            poisoned: false,
        }));
        // SAFETY: plain allocation; checked for null below.
        let buffer = unsafe { ffi::av_malloc(IO_BUFFER_SIZE) }.cast::<u8>();
        if buffer.is_null() {
            // SAFETY: `state` came from `Box::into_raw` above and was not shared.
            drop(unsafe { Box::from_raw(state) });
            return Err(Error::from(ffi::AVERROR(ffi::ENOMEM)));
        }
        // SAFETY: `buffer` is an av_malloc'd block of IO_BUFFER_SIZE bytes;
        // `state` stays valid until `Drop`, which frees the context first.
        let ctx = unsafe {
            ffi::avio_alloc_context(
                buffer,
                IO_BUFFER_SIZE as c_int,
                0, // read-only
                state.cast::<c_void>(),
                Some(read_packet),
                None,
                Some(seek),
            )
        };
        if ctx.is_null() {
            // SAFETY: the context was not created, so we still own both.
            unsafe {
                ffi::av_free(buffer.cast::<c_void>());
                drop(Box::from_raw(state));
            }
            return Err(Error::from(ffi::AVERROR(ffi::ENOMEM)));
        }
        Ok(CustomIo { ctx, state })
    }
}

impl Drop for CustomIo {
    fn drop(&mut self) {
        // SAFETY: `ctx` and `state` were created in `new` and are freed only
        // here. The buffer may have been reallocated by FFmpeg, so free the
        // one currently stored in the context.
        unsafe {
            ffi::av_freep(ptr::addr_of_mut!((*self.ctx).buffer).cast::<c_void>());
            ffi::avio_context_free(&mut self.ctx);
            drop(Box::from_raw(self.state));
        }
    }
}

/// An opened FFmpeg input that reads through a Rust reader.
///
/// Dereferences to [`ffmpeg_next::format::context::Input`], so streams,
/// packets and seeking work as for a path-based input.
///
/// Caveat: `Stream::parameters()` returns a [`ffmpeg_next::codec::Parameters`]
/// that keeps the format context alive through ffmpeg-next's internal
/// `Rc`. If such a value is still alive when this `ReaderInput` is dropped,
/// the format context cannot be closed yet, and because a demuxer may touch
/// `pb` while closing, the I/O context and the reader are then deliberately
/// leaked rather than freed under FFmpeg's feet. Turn parameters into a
/// decoder (which copies them) and drop them before dropping the input.
///
/// Reader errors: ffmpeg-next's `Input::packets()` iterator silently retries
/// on every non-EOF error, and FFmpeg's I/O errors are sticky, so with a
/// reader that can fail (decryption, network) it spins forever. Read with
/// `Packet::read(&mut input)` in a loop and stop on `Err` instead.
pub struct ReaderInput {
    /// Dropped manually in `Drop` so that the close happens before `io` is
    /// freed regardless of field order.
    input: ManuallyDrop<Input>,
    io: ManuallyDrop<CustomIo>,
}

impl ReaderInput {
    /// Opens and probes (`avformat_find_stream_info`) the container in `reader`.
    ///
    /// The format is detected from the content (there is no file name to
    /// guess from). The reader must be positioned at the start of the
    /// container. On failure everything allocated so far, including the
    /// reader, is released.
    pub fn open(reader: Box<dyn ReadSeek>) -> Result<Self, Error> {
        let io = CustomIo::new(reader)?;

        // SAFETY: allocation; checked for null below.
        let mut fmt = unsafe { ffi::avformat_alloc_context() };
        if fmt.is_null() {
            return Err(Error::from(ffi::AVERROR(ffi::ENOMEM)));
        }
        // SAFETY: `fmt` is a fresh context; with a preset `pb` and
        // AVFMT_FLAG_CUSTOM_IO, FFmpeg reads via our callbacks and never
        // closes `pb` itself. On failure avformat_open_input frees `fmt` (but
        // not `pb`) and nulls the pointer; `io` is then dropped by us.
        let ret = unsafe {
            (*fmt).pb = io.ctx;
            (*fmt).flags |= ffi::AVFMT_FLAG_CUSTOM_IO;
            ffi::avformat_open_input(&mut fmt, ptr::null(), ptr::null(), ptr::null_mut())
        };
        if ret < 0 {
            return Err(Error::from(ret));
        }

        // From here on `Drop` of `ReaderInput` cleans up in the right order.
        let mut this = ReaderInput {
            // SAFETY: `fmt` is an opened input context that we hand over.
            input: ManuallyDrop::new(unsafe { Input::wrap(fmt) }),
            io: ManuallyDrop::new(io),
        };
        // SAFETY: valid opened context.
        let ret =
            unsafe { ffi::avformat_find_stream_info(this.input.as_mut_ptr(), ptr::null_mut()) };
        if ret < 0 {
            return Err(Error::from(ret));
        }
        Ok(this)
    }
}

impl Drop for ReaderInput {
    fn drop(&mut self) {
        // `Input` has no `Drop` of its own: closing is done by a shared
        // `Rc<Destructor>` (which calls `avformat_close_input`) that
        // `Stream::parameters()` also clones. Grab a handle to see whether
        // dropping `Input` really closes the context.
        // SAFETY: only clones the Rc.
        let dtor = unsafe { self.input.destructor() };
        // SAFETY: `input` is dropped exactly once, here, and never used again.
        unsafe { ManuallyDrop::drop(&mut self.input) };
        let last_owner = Rc::strong_count(&dtor) == 1;
        // Dropping the last handle runs avformat_close_input now.
        drop(dtor);
        if last_owner {
            // SAFETY: the format context is closed; nothing refers to `pb`
            // or the reader any more. Dropped exactly once.
            unsafe { ManuallyDrop::drop(&mut self.io) };
        }
        // Otherwise a `codec::Parameters` still keeps the format context
        // open, and its eventual close may touch `pb`: leak `io` instead of
        // risking a use-after-free (see the type-level docs).
    }
}

impl Deref for ReaderInput {
    type Target = Input;

    fn deref(&self) -> &Input {
        &self.input
    }
}

impl DerefMut for ReaderInput {
    fn deref_mut(&mut self) -> &mut Input {
        &mut self.input
    }
}
