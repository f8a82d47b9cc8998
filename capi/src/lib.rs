//! The C ABI of `hrm-runtime`: a model read in place from a blob, sessions in caller-provided
//! memory, the Sudoku solver of `hrm solve`, as plain C functions. The header is
//! `include/hrm.h` (generated from this file by cbindgen; `tests/header.rs` fails when it is
//! stale and rewrites it with `HRM_BLESS=1`).
//!
//! Like the runtime, the library allocates nothing and keeps no global state: `hrm_model` and
//! `hrm_session` are complete C types of fixed size that the caller places anywhere (`static`,
//! stack, heap), the arena is the caller's, and the blob is read where it lies. Every function
//! returns `HRM_OK` (0) or a distinct negative code that `hrm_strerror` names; none panics
//! (the crate denies the lints that could), and an `extern "C"` function aborts rather than
//! unwind, so nothing can unwind into C.
//!
//! Pointers are checked for NULL and alignment; beyond that the library trusts the lengths the
//! caller passes with them. A blob and an arena must outlive every session made from them, and a
//! session is used by one thread at a time (different sessions of one model may run in
//! parallel).
#![no_std]
#![allow(non_camel_case_types)]

#[cfg(feature = "std")]
extern crate std;

use core::ffi::{c_char, c_int};
use core::mem::{align_of, size_of, MaybeUninit};

use hrm_runtime::ensemble::{self, Plan};
use hrm_runtime::sudoku::{self, PuzzleError, CELLS};
use hrm_runtime::{Error, Halting, Model, ModelKind, Session};

/// Without std (a bare-metal staticlib), a panic has nowhere to go. None can happen: the crate
/// and the runtime deny every lint that could panic; this only completes the library.
#[cfg(all(not(feature = "std"), not(test), target_os = "none"))]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    loop {
        core::hint::spin_loop();
    }
}

/// Success.
pub const HRM_OK: c_int = 0;
/// A pointer argument that must not be NULL is.
pub const HRM_ERR_NULL: c_int = -1;
/// The `hrm_model` or `hrm_session` was not set up by `hrm_model_init` / `hrm_session_init`
/// (or its last init failed).
pub const HRM_ERR_NOT_INITIALISED: c_int = -2;
/// A pointer argument is not aligned for its type (8 bytes for `hrm_model` and
/// `hrm_session`, 4 for `uint32_t` and `float` arrays).
pub const HRM_ERR_POINTER_ALIGNMENT: c_int = -3;
/// An argument is out of range (a halting mode, a number of trajectories).
pub const HRM_ERR_INVALID_ARGUMENT: c_int = -4;
/// The blob ends before the structure it should hold.
pub const HRM_ERR_TRUNCATED: c_int = -10;
/// The blob does not start with `HRMB`.
pub const HRM_ERR_BAD_MAGIC: c_int = -11;
/// The blob was written for another version of the format.
pub const HRM_ERR_UNSUPPORTED_VERSION: c_int = -12;
/// The blob's header does not match its CRC-32.
pub const HRM_ERR_HEADER_CRC: c_int = -13;
/// The blob's tensor table and data do not match their CRC-32.
pub const HRM_ERR_PAYLOAD_CRC: c_int = -14;
/// A header field is out of range or inconsistent with the others.
pub const HRM_ERR_INVALID_HEADER: c_int = -15;
/// A tensor of the blob is not what the model's configuration requires.
pub const HRM_ERR_INVALID_TENSOR: c_int = -16;
/// The blob (or a tensor in it) is not aligned in memory: the blob must start at a multiple of
/// 4 bytes (64 for best speed).
pub const HRM_ERR_BLOB_ALIGNMENT: c_int = -17;
/// The arena is smaller than `hrm_model_arena_bytes`.
pub const HRM_ERR_ARENA_TOO_SMALL: c_int = -18;
/// The arena does not start at a multiple of 4 bytes.
pub const HRM_ERR_ARENA_ALIGNMENT: c_int = -19;
/// The number of tokens is not the model's `seq_len`.
pub const HRM_ERR_INPUT_LENGTH: c_int = -20;
/// A token is not below the model's vocabulary size.
pub const HRM_ERR_INVALID_TOKEN: c_int = -21;
/// The puzzle identifier is not below the model's `num_puzzle_identifiers`.
pub const HRM_ERR_INVALID_PUZZLE_ID: c_int = -22;
/// `hrm_session_step` (or a reader of its outputs) before any `hrm_session_reset`.
pub const HRM_ERR_NOT_RESET: c_int = -23;
/// An output array has the wrong length.
pub const HRM_ERR_OUTPUT_LENGTH: c_int = -24;
/// A noise level out of range (the runtime's ensembles; not reachable through this header yet).
pub const HRM_ERR_INVALID_NOISE: c_int = -25;
/// A Sudoku puzzle holds a character other than `1`-`9`, `.` and `0`.
pub const HRM_ERR_PUZZLE_CHARACTER: c_int = -30;
/// A Sudoku puzzle does not have 81 cells.
pub const HRM_ERR_PUZZLE_LENGTH: c_int = -31;
/// Two givens of a Sudoku puzzle conflict (the same digit twice in a row, column or box).
pub const HRM_ERR_PUZZLE_CONFLICT: c_int = -32;
/// The model is not a Sudoku model (81 positions, vocabulary of 11).
pub const HRM_ERR_NOT_SUDOKU: c_int = -33;

/// `hrm_session_run`: the reference's evaluation, always `halt_max_steps` segments (what
/// `hrm solve` does by default).
pub const HRM_HALT_FIXED: c_int = 0;
/// `hrm_session_run`: stop after the first segment whose Q head says halt, at most
/// `halt_max_steps` segments. A positive value runs exactly that many segments.
pub const HRM_HALT_ADAPTIVE: c_int = -1;

/// The most trajectories `hrm_solve_sudoku_ensemble` runs for one puzzle.
pub const HRM_MAX_TRAJECTORIES: u32 = 65_536;

/// 64-bit words of an `hrm_model`: enough for the runtime's model handle on every target.
pub const HRM_MODEL_WORDS: usize = 48;
/// 64-bit words of an `hrm_session`.
pub const HRM_SESSION_WORDS: usize = 96;

/// A validated model: the blob's parsed header and tensor layout, pointing into the blob (which
/// must stay where it is). Set up by `hrm_model_init`; its contents are private.
#[repr(C)]
pub struct hrm_model {
    pub _opaque: [u64; HRM_MODEL_WORDS],
}

/// The working state of one example (the carry, the latest logits), whose buffers lie in the
/// caller's arena. Set up by `hrm_session_init`; its contents are private.
#[repr(C)]
pub struct hrm_session {
    pub _opaque: [u64; HRM_SESSION_WORDS],
}

/// What `hrm_model_get_info` reports.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct hrm_model_info {
    /// 0: HRM, 1: TRM.
    pub kind: u32,
    /// Positions of one example (81 for Sudoku).
    pub seq_len: u32,
    /// Token values are below this (11 for Sudoku: pad, blank, digits 1-9).
    pub vocab_size: u32,
    pub num_puzzle_identifiers: u32,
    pub hidden_size: u32,
    /// Segments of `HRM_HALT_FIXED`; the most of `HRM_HALT_ADAPTIVE`.
    pub halt_max_steps: u32,
    /// Bytes of arena a session needs (also `hrm_model_arena_bytes`).
    pub arena_bytes: u64,
    /// Bytes of the blob.
    pub blob_bytes: u64,
}

const MODEL_MAGIC: u64 = 0x6872_6d5f_6d6f_6465; // "hrm_mode"
const SESSION_MAGIC: u64 = 0x6872_6d5f_7365_7373; // "hrm_sess"

/// What an `hrm_model` holds: a tag saying it was set up, then the runtime's handle.
#[repr(C)]
struct ModelSlot {
    magic: u64,
    model: MaybeUninit<Model<'static>>,
}

#[repr(C)]
struct SessionSlot {
    magic: u64,
    session: MaybeUninit<Session<'static, 'static>>,
}

// The header fixes the sizes: the runtime's types must fit them on every target this builds for
// (a 64-bit host is the largest).
const _: () = assert!(size_of::<ModelSlot>() <= size_of::<hrm_model>());
const _: () = assert!(align_of::<ModelSlot>() <= align_of::<hrm_model>());
const _: () = assert!(size_of::<SessionSlot>() <= size_of::<hrm_session>());
const _: () = assert!(align_of::<SessionSlot>() <= align_of::<hrm_session>());

fn error_code(e: Error) -> c_int {
    match e {
        Error::Truncated { .. } => HRM_ERR_TRUNCATED,
        Error::BadMagic => HRM_ERR_BAD_MAGIC,
        Error::UnsupportedVersion { .. } => HRM_ERR_UNSUPPORTED_VERSION,
        Error::HeaderCrcMismatch { .. } => HRM_ERR_HEADER_CRC,
        Error::PayloadCrcMismatch { .. } => HRM_ERR_PAYLOAD_CRC,
        Error::InvalidHeader(_) => HRM_ERR_INVALID_HEADER,
        Error::InvalidTensor { .. } => HRM_ERR_INVALID_TENSOR,
        Error::Misaligned => HRM_ERR_BLOB_ALIGNMENT,
        Error::ArenaTooSmall { .. } => HRM_ERR_ARENA_TOO_SMALL,
        Error::ArenaMisaligned => HRM_ERR_ARENA_ALIGNMENT,
        Error::InputLength { .. } => HRM_ERR_INPUT_LENGTH,
        Error::InvalidToken { .. } => HRM_ERR_INVALID_TOKEN,
        Error::InvalidPuzzleId { .. } => HRM_ERR_INVALID_PUZZLE_ID,
        Error::NotReset => HRM_ERR_NOT_RESET,
        Error::OutputLength { .. } => HRM_ERR_OUTPUT_LENGTH,
        Error::InvalidNoise => HRM_ERR_INVALID_NOISE,
    }
}

fn puzzle_code(e: PuzzleError) -> c_int {
    match e {
        PuzzleError::Character { .. } => HRM_ERR_PUZZLE_CHARACTER,
        PuzzleError::Length { .. } => HRM_ERR_PUZZLE_LENGTH,
        PuzzleError::Conflict(_) => HRM_ERR_PUZZLE_CONFLICT,
    }
}

/// A message for every code this library returns (and one for any other value). The string is
/// static: never free it.
#[no_mangle]
pub extern "C" fn hrm_strerror(code: c_int) -> *const c_char {
    let message: &'static core::ffi::CStr = match code {
        HRM_OK => c"success",
        HRM_ERR_NULL => c"a required pointer argument is NULL",
        HRM_ERR_NOT_INITIALISED => c"the model or session was not set up by hrm_model_init / hrm_session_init (or its last init failed)",
        HRM_ERR_POINTER_ALIGNMENT => c"a pointer argument is not aligned for its type (8 bytes for hrm_model and hrm_session, 4 for uint32_t and float arrays)",
        HRM_ERR_INVALID_ARGUMENT => c"an argument is out of range",
        HRM_ERR_TRUNCATED => c"the blob is truncated: it ends before the structure it should hold",
        HRM_ERR_BAD_MAGIC => c"not an HRM blob (bad magic; expected \"HRMB\")",
        HRM_ERR_UNSUPPORTED_VERSION => c"the blob was written for another version of the format",
        HRM_ERR_HEADER_CRC => c"the blob's header is corrupt (CRC-32 mismatch)",
        HRM_ERR_PAYLOAD_CRC => c"the blob's tensor data is corrupt (CRC-32 mismatch)",
        HRM_ERR_INVALID_HEADER => c"a field of the blob's header is out of range or inconsistent",
        HRM_ERR_INVALID_TENSOR => c"a tensor of the blob is not what the model's configuration requires",
        HRM_ERR_BLOB_ALIGNMENT => c"the blob (or a tensor in it) is misaligned: it must start at a multiple of 4 bytes (64 for best speed)",
        HRM_ERR_ARENA_TOO_SMALL => c"the arena is smaller than hrm_model_arena_bytes",
        HRM_ERR_ARENA_ALIGNMENT => c"the arena does not start at a multiple of 4 bytes",
        HRM_ERR_INPUT_LENGTH => c"the number of tokens is not the model's seq_len",
        HRM_ERR_INVALID_TOKEN => c"a token is not below the model's vocabulary size",
        HRM_ERR_INVALID_PUZZLE_ID => c"the puzzle identifier is not below the model's num_puzzle_identifiers",
        HRM_ERR_NOT_RESET => c"the session has no example: call hrm_session_reset first",
        HRM_ERR_OUTPUT_LENGTH => c"an output array has the wrong length",
        HRM_ERR_INVALID_NOISE => c"a noise level is negative, not a number or over 1000",
        HRM_ERR_PUZZLE_CHARACTER => c"the puzzle holds a character other than 1-9, '.' and '0'",
        HRM_ERR_PUZZLE_LENGTH => c"the puzzle does not have 81 cells",
        HRM_ERR_PUZZLE_CONFLICT => c"two givens of the puzzle conflict (a digit twice in a row, column or box)",
        HRM_ERR_NOT_SUDOKU => c"the model is not a Sudoku model (81 positions, vocabulary of 11)",
        _ => c"unknown hrm error code",
    };
    message.as_ptr()
}

/// The library's version (the crate's, e.g. "0.1.0"); static.
#[no_mangle]
pub extern "C" fn hrm_version() -> *const c_char {
    const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");
    VERSION.as_ptr().cast()
}

fn aligned<T>(p: *const T) -> bool {
    p.is_aligned()
}

/// The model an `hrm_model` holds.
///
/// # Safety
/// `model` is NULL or points to `size_of(hrm_model)` readable bytes.
unsafe fn model_ref<'a>(model: *const hrm_model) -> Result<&'a Model<'static>, c_int> {
    if model.is_null() {
        return Err(HRM_ERR_NULL);
    }
    if !aligned(model) {
        return Err(HRM_ERR_POINTER_ALIGNMENT);
    }
    // SAFETY: non-null, aligned, and (the caller's contract) readable; `ModelSlot` fits in
    // `hrm_model` (asserted above) and every bit pattern of its `magic` is a valid u64.
    let slot = unsafe { &*model.cast::<ModelSlot>() };
    if slot.magic != MODEL_MAGIC {
        return Err(HRM_ERR_NOT_INITIALISED);
    }
    // SAFETY: the magic is only written after the handle (`hrm_model_init`).
    Ok(unsafe { slot.model.assume_init_ref() })
}

/// # Safety
/// `session` is NULL or points to `size_of(hrm_session)` bytes, written only through this
/// library while the returned reference lives.
unsafe fn session_mut<'a>(session: *mut hrm_session) -> Result<&'a mut Session<'static, 'static>, c_int> {
    if session.is_null() {
        return Err(HRM_ERR_NULL);
    }
    if !aligned(session) {
        return Err(HRM_ERR_POINTER_ALIGNMENT);
    }
    // SAFETY: as in `model_ref`, and the caller's contract makes this the only reference.
    let slot = unsafe { &mut *session.cast::<SessionSlot>() };
    if slot.magic != SESSION_MAGIC {
        return Err(HRM_ERR_NOT_INITIALISED);
    }
    // SAFETY: the magic is only written after the session (`hrm_session_init`).
    Ok(unsafe { slot.session.assume_init_mut() })
}

/// # Safety
/// As `session_mut`, shared.
unsafe fn session_ref<'a>(session: *const hrm_session) -> Result<&'a Session<'static, 'static>, c_int> {
    if session.is_null() {
        return Err(HRM_ERR_NULL);
    }
    if !aligned(session) {
        return Err(HRM_ERR_POINTER_ALIGNMENT);
    }
    // SAFETY: as in `model_ref`.
    let slot = unsafe { &*session.cast::<SessionSlot>() };
    if slot.magic != SESSION_MAGIC {
        return Err(HRM_ERR_NOT_INITIALISED);
    }
    // SAFETY: as in `session_mut`.
    Ok(unsafe { slot.session.assume_init_ref() })
}

/// A slice from a C array: NULL is allowed only for an empty one.
///
/// # Safety
/// `data` is NULL or points to `len` readable values of `T`.
unsafe fn slice_in<'a, T>(data: *const T, len: usize) -> Result<&'a [T], c_int> {
    if data.is_null() {
        return if len == 0 { Ok(&[]) } else { Err(HRM_ERR_NULL) };
    }
    if !aligned(data) {
        return Err(HRM_ERR_POINTER_ALIGNMENT);
    }
    // SAFETY: the caller's contract.
    Ok(unsafe { core::slice::from_raw_parts(data, len) })
}

/// # Safety
/// `data` is NULL or points to `len` writable values of `T`, used by nothing else meanwhile.
unsafe fn slice_out<'a, T>(data: *mut T, len: usize) -> Result<&'a mut [T], c_int> {
    if data.is_null() {
        return if len == 0 { Ok(&mut []) } else { Err(HRM_ERR_NULL) };
    }
    if !aligned(data) {
        return Err(HRM_ERR_POINTER_ALIGNMENT);
    }
    // SAFETY: the caller's contract.
    Ok(unsafe { core::slice::from_raw_parts_mut(data, len) })
}

fn status(result: Result<(), c_int>) -> c_int {
    match result {
        Ok(()) => HRM_OK,
        Err(code) => code,
    }
}

/// Validates the blob of `len` bytes at `blob` completely (magic, version, both CRCs, the
/// configuration, every tensor's shape, type, bounds and alignment) and sets up `model` to
/// read it in place: nothing is copied, so the blob must stay where it is, unchanged, while
/// the model or any session of it is used. `len` may exceed the blob (a flash region).
/// On failure `model` is left not initialised.
///
/// # Safety
/// `model` points to a writable `hrm_model`; `blob` to `len` readable bytes that live and stay
/// unchanged as long as the model or a session made from it is used.
#[no_mangle]
pub unsafe extern "C" fn hrm_model_init(model: *mut hrm_model, blob: *const u8, len: usize) -> c_int {
    if model.is_null() {
        return HRM_ERR_NULL;
    }
    if !aligned(model) {
        return HRM_ERR_POINTER_ALIGNMENT;
    }
    let slot = model.cast::<ModelSlot>();
    // SAFETY: `model` is non-null, aligned and writable (the caller's contract), and
    // `ModelSlot` fits in it. The tag is cleared first so that a failed init leaves the model
    // not initialised.
    unsafe { (*slot).magic = 0 };
    // SAFETY: the caller's contract on `blob`; the 'static lifetime is the caller's promise
    // that the blob outlives every use of the model.
    let bytes: &'static [u8] = match unsafe { slice_in(blob, len) } {
        Ok(bytes) => bytes,
        Err(code) => return code,
    };
    match Model::from_bytes(bytes) {
        Ok(m) => {
            // SAFETY: as above.
            unsafe {
                (*slot).model = MaybeUninit::new(m);
                (*slot).magic = MODEL_MAGIC;
            }
            HRM_OK
        }
        Err(e) => error_code(e),
    }
}

/// Bytes of working memory a session of `model` needs (0 when `model` is not initialised).
///
/// # Safety
/// `model` is NULL or points to an `hrm_model`.
#[no_mangle]
pub unsafe extern "C" fn hrm_model_arena_bytes(model: *const hrm_model) -> usize {
    // SAFETY: the caller's contract.
    unsafe { model_ref(model) }.map_or(0, |m| m.arena_bytes())
}

/// Fills `info` with the model's sizes.
///
/// # Safety
/// `model` is NULL or points to an `hrm_model`; `info` NULL or to a writable `hrm_model_info`.
#[no_mangle]
pub unsafe extern "C" fn hrm_model_get_info(model: *const hrm_model, info: *mut hrm_model_info) -> c_int {
    // SAFETY: the caller's contract.
    let m = match unsafe { model_ref(model) } {
        Ok(m) => m,
        Err(code) => return code,
    };
    if info.is_null() {
        return HRM_ERR_NULL;
    }
    if !aligned(info) {
        return HRM_ERR_POINTER_ALIGNMENT;
    }
    let c = m.config();
    let value = hrm_model_info {
        kind: match c.kind {
            ModelKind::Hrm => 0,
            ModelKind::Trm => 1,
        },
        seq_len: c.seq_len,
        vocab_size: c.vocab_size,
        num_puzzle_identifiers: c.num_puzzle_identifiers,
        hidden_size: c.hidden_size,
        halt_max_steps: c.halt_max_steps,
        arena_bytes: m.arena_bytes() as u64,
        blob_bytes: m.bytes().len() as u64,
    };
    // SAFETY: non-null, aligned, writable (the caller's contract).
    unsafe { info.write(value) };
    HRM_OK
}

/// Sets up `session` for `model` in the `len` bytes at `arena` (at least
/// `hrm_model_arena_bytes`, 4-byte aligned; 64 for best speed). The session keeps its own copy
/// of the model handle, so `model` itself may go once this returns; the blob and the arena may
/// not. A session that was set up before is simply replaced. On failure `session` is left not
/// initialised.
///
/// # Safety
/// `session` points to a writable `hrm_session`; `model` is NULL or points to an `hrm_model`;
/// `arena` to `len` writable bytes that nothing else uses while the session does.
#[no_mangle]
pub unsafe extern "C" fn hrm_session_init(
    session: *mut hrm_session,
    model: *const hrm_model,
    arena: *mut u8,
    len: usize,
) -> c_int {
    if session.is_null() {
        return HRM_ERR_NULL;
    }
    if !aligned(session) {
        return HRM_ERR_POINTER_ALIGNMENT;
    }
    let slot = session.cast::<SessionSlot>();
    // SAFETY: non-null, aligned, writable, and `SessionSlot` fits (asserted above).
    unsafe { (*slot).magic = 0 };
    // SAFETY: the caller's contract.
    let m = match unsafe { model_ref(model) } {
        Ok(m) => *m,
        Err(code) => return code,
    };
    // SAFETY: the caller's contract on `arena`; 'static is the caller's promise that it
    // outlives the session.
    let arena: &'static mut [u8] = match unsafe { slice_out(arena, len) } {
        Ok(arena) => arena,
        Err(code) => return code,
    };
    match Session::new(m, arena) {
        Ok(s) => {
            // SAFETY: as above.
            unsafe {
                (*slot).session = MaybeUninit::new(s);
                (*slot).magic = SESSION_MAGIC;
            }
            HRM_OK
        }
        Err(e) => error_code(e),
    }
}

/// Loads an example: `n` tokens (the model's `seq_len`, each below `vocab_size`) and its
/// puzzle identifier (0 for models trained without per-puzzle embeddings), and resets the
/// carry. Sudoku's tokens: a blank is 1, digit d is d + 1; predictions map back the same way. On failure the session has no example until the next successful reset.
///
/// # Safety
/// `session` is NULL or points to an `hrm_session`; `tokens` NULL or to `n` readable values.
#[no_mangle]
pub unsafe extern "C" fn hrm_session_reset(
    session: *mut hrm_session,
    tokens: *const u32,
    n: usize,
    puzzle_id: u32,
) -> c_int {
    status((|| -> Result<(), c_int> {
        // SAFETY: the caller's contract.
        let s = unsafe { session_mut(session) }?;
        // SAFETY: the caller's contract.
        let tokens = unsafe { slice_in(tokens, n) }?;
        s.reset(tokens, puzzle_id).map_err(error_code)
    })())
}

/// Runs one ACT segment and writes its Q values (`q_halt`, `q_continue`: either may be NULL).
/// The Q head asks to halt when `q_halt > q_continue` (TRM without the continue head:
/// `q_halt > 0`).
///
/// # Safety
/// `session` is NULL or points to an `hrm_session`; `q_halt` and `q_continue` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn hrm_session_step(session: *mut hrm_session, q_halt: *mut f32, q_continue: *mut f32) -> c_int {
    status((|| -> Result<(), c_int> {
        // SAFETY: the caller's contract.
        let s = unsafe { session_mut(session) }?;
        for p in [q_halt, q_continue] {
            if !p.is_null() && !aligned(p) {
                return Err(HRM_ERR_POINTER_ALIGNMENT);
            }
        }
        let outcome = s.step().map_err(error_code)?;
        // SAFETY: non-null ones are aligned (checked) and writable (the caller's contract).
        unsafe {
            if !q_halt.is_null() {
                q_halt.write(outcome.q_halt);
            }
            if !q_continue.is_null() {
                q_continue.write(outcome.q_continue);
            }
        }
        Ok(())
    })())
}

/// Runs segments from the current state: `HRM_HALT_FIXED` (the model's `halt_max_steps`, as
/// `hrm solve`), `HRM_HALT_ADAPTIVE` (until the Q head halts, at most `halt_max_steps`) or
/// exactly `halting` > 0 segments. Writes the number run to `segments` (may be NULL).
///
/// # Safety
/// `session` is NULL or points to an `hrm_session`; `segments` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn hrm_session_run(session: *mut hrm_session, halting: c_int, segments: *mut u32) -> c_int {
    status((|| -> Result<(), c_int> {
        // SAFETY: the caller's contract.
        let s = unsafe { session_mut(session) }?;
        let halting = match halting {
            HRM_HALT_FIXED => Halting::Fixed,
            HRM_HALT_ADAPTIVE => Halting::Adaptive,
            n if n > 0 => Halting::Segments(n.unsigned_abs()),
            _ => return Err(HRM_ERR_INVALID_ARGUMENT),
        };
        if !segments.is_null() && !aligned(segments) {
            return Err(HRM_ERR_POINTER_ALIGNMENT);
        }
        let run = s.run(halting).map_err(error_code)?;
        if !segments.is_null() {
            // SAFETY: aligned (checked) and writable (the caller's contract).
            unsafe { segments.write(run) };
        }
        Ok(())
    })())
}

/// The predicted token at each of the `n` positions (`n` = the model's `seq_len`): the argmax
/// of the latest segment's logits.
///
/// # Safety
/// `session` is NULL or points to an `hrm_session`; `out` NULL or to `n` writable values.
#[no_mangle]
pub unsafe extern "C" fn hrm_session_predictions(session: *const hrm_session, out: *mut u32, n: usize) -> c_int {
    status((|| -> Result<(), c_int> {
        // SAFETY: the caller's contract.
        let s = unsafe { session_ref(session) }?;
        if s.segments() == 0 {
            return Err(HRM_ERR_NOT_RESET);
        }
        // SAFETY: the caller's contract.
        let out = unsafe { slice_out(out, n) }?;
        s.predictions(out).map_err(error_code)
    })())
}

/// The latest segment's logits, `seq_len × vocab_size` values, position-major, into `out` of
/// length `n` (a fixed-point model's are converted to float).
///
/// # Safety
/// `session` is NULL or points to an `hrm_session`; `out` NULL or to `n` writable values.
#[no_mangle]
pub unsafe extern "C" fn hrm_session_logits(session: *const hrm_session, out: *mut f32, n: usize) -> c_int {
    status((|| -> Result<(), c_int> {
        // SAFETY: the caller's contract.
        let s = unsafe { session_ref(session) }?;
        if s.segments() == 0 {
            return Err(HRM_ERR_NOT_RESET);
        }
        // SAFETY: the caller's contract.
        let out = unsafe { slice_out(out, n) }?;
        s.logits_into(out).map_err(error_code)
    })())
}

/// Reads a NUL-terminated puzzle of at most `CELLS + 64` bytes (surrounding ASCII whitespace,
/// such as a line's newline, is ignored).
///
/// # Safety
/// `text` is NULL or a NUL-terminated string.
unsafe fn read_puzzle(text: *const c_char) -> Result<sudoku::Grid, c_int> {
    const MAX: usize = CELLS + 64;
    if text.is_null() {
        return Err(HRM_ERR_NULL);
    }
    let mut bytes = [0u8; MAX];
    let mut n = 0;
    for slot in bytes.iter_mut() {
        // SAFETY: the string is NUL-terminated (the caller's contract) and reading stops at
        // its NUL.
        let b = unsafe { text.add(n).read() } as u8;
        if b == 0 {
            break;
        }
        *slot = b;
        n += 1;
    }
    if n == MAX {
        return Err(HRM_ERR_PUZZLE_LENGTH);
    }
    let line = bytes.get(..n).ok_or(HRM_ERR_PUZZLE_LENGTH)?;
    let text = core::str::from_utf8(line).map_err(|_| HRM_ERR_PUZZLE_CHARACTER)?;
    sudoku::parse(text.trim_ascii()).map_err(puzzle_code)
}

fn sudoku_session(s: &Session<'_, '_>) -> Result<(), c_int> {
    let c = s.model().config();
    if c.seq_len as usize != CELLS || c.vocab_size != sudoku::VOCAB {
        return Err(HRM_ERR_NOT_SUDOKU);
    }
    Ok(())
}

/// # Safety
/// `answer` points to `CELLS + 1` writable bytes.
unsafe fn write_answer(answer: *mut c_char, grid: &sudoku::Grid) {
    for (i, &d) in grid.iter().enumerate() {
        // SAFETY: i < CELLS; the caller's contract.
        unsafe { answer.add(i).write((b'0' + d.min(9)) as c_char) };
    }
    // SAFETY: the caller's contract.
    unsafe { answer.add(CELLS).write(0) };
}

/// Solves a Sudoku as `hrm solve sudoku` does without options: `puzzle81` is 81 characters
/// (`1`-`9` a given, `.` or `0` a blank; NUL-terminated, surrounding whitespace ignored), and
/// `answer82` receives the model's 81 digits and a NUL after `halt_max_steps` segments. The
/// answer is the model's, right or wrong; `hrm_sudoku_is_solution` checks it.
///
/// # Safety
/// `session` is NULL or points to an `hrm_session`; `puzzle81` NULL or a NUL-terminated
/// string; `answer82` NULL or 82 writable bytes.
#[no_mangle]
pub unsafe extern "C" fn hrm_solve_sudoku(
    session: *mut hrm_session,
    puzzle81: *const c_char,
    answer82: *mut c_char,
) -> c_int {
    status((|| -> Result<(), c_int> {
        // SAFETY: the caller's contract.
        let s = unsafe { session_mut(session) }?;
        sudoku_session(s)?;
        // SAFETY: the caller's contract.
        let grid = unsafe { read_puzzle(puzzle81) }?;
        if answer82.is_null() {
            return Err(HRM_ERR_NULL);
        }
        s.reset(&sudoku::to_tokens(&grid), 0).map_err(error_code)?;
        s.run(Halting::Fixed).map_err(error_code)?;
        let mut predictions = [0u32; CELLS];
        s.predictions(&mut predictions).map_err(error_code)?;
        // SAFETY: non-null; 82 writable bytes (the caller's contract).
        unsafe { write_answer(answer82, &sudoku::from_tokens(&predictions)) };
        Ok(())
    })())
}

/// Solves a Sudoku with `hrm solve sudoku --ensemble K`'s default ensemble: up to
/// `trajectories` (1 to `HRM_MAX_TRAJECTORIES`) runs, each but the first under a random
/// symmetry of the puzzle (seed 0, so the same answers everywhere), stopping at the first
/// answer that satisfies the rules; with none, the answer of the highest Q-halt. `valid` (may
/// be NULL) receives 1 when the answer is a valid completion, else 0.
///
/// # Safety
/// As `hrm_solve_sudoku`; `valid` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn hrm_solve_sudoku_ensemble(
    session: *mut hrm_session,
    puzzle81: *const c_char,
    answer82: *mut c_char,
    trajectories: u32,
    valid: *mut c_int,
) -> c_int {
    status((|| -> Result<(), c_int> {
        // SAFETY: the caller's contract.
        let s = unsafe { session_mut(session) }?;
        sudoku_session(s)?;
        if !(1..=HRM_MAX_TRAJECTORIES).contains(&trajectories) {
            return Err(HRM_ERR_INVALID_ARGUMENT);
        }
        // SAFETY: the caller's contract.
        let grid = unsafe { read_puzzle(puzzle81) }?;
        if answer82.is_null() {
            return Err(HRM_ERR_NULL);
        }
        if !valid.is_null() && !aligned(valid) {
            return Err(HRM_ERR_POINTER_ALIGNMENT);
        }
        let outcome =
            ensemble::solve_sudoku(s, &grid, &Plan::symmetries(trajectories), |_, _| true).map_err(error_code)?;
        // SAFETY: non-null, 82 writable bytes; `valid` aligned and writable when non-null.
        unsafe {
            write_answer(answer82, &outcome.answer);
            if !valid.is_null() {
                valid.write(c_int::from(outcome.valid));
            }
        }
        Ok(())
    })())
}

/// 1 when `answer81` (81 digits) is a valid completion of `puzzle81` (same givens, every row,
/// column and box holding 1-9 once), 0 when not, or a negative code for an unreadable puzzle
/// or answer. Both NUL-terminated.
///
/// # Safety
/// Both NULL or NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn hrm_sudoku_is_solution(puzzle81: *const c_char, answer81: *const c_char) -> c_int {
    // SAFETY: the caller's contract.
    let puzzle = match unsafe { read_puzzle(puzzle81) } {
        Ok(g) => g,
        Err(code) => return code,
    };
    // SAFETY: the caller's contract.
    match unsafe { read_puzzle(answer81) } {
        Ok(answer) => c_int::from(sudoku::is_solution(&puzzle, &answer)),
        // A grid with conflicts parses as no answer at all, but it is a readable wrong one.
        Err(HRM_ERR_PUZZLE_CONFLICT) => 0,
        Err(code) => code,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_its_own_message() {
        let codes = [
            HRM_OK,
            HRM_ERR_NULL,
            HRM_ERR_NOT_INITIALISED,
            HRM_ERR_POINTER_ALIGNMENT,
            HRM_ERR_INVALID_ARGUMENT,
            HRM_ERR_TRUNCATED,
            HRM_ERR_BAD_MAGIC,
            HRM_ERR_UNSUPPORTED_VERSION,
            HRM_ERR_HEADER_CRC,
            HRM_ERR_PAYLOAD_CRC,
            HRM_ERR_INVALID_HEADER,
            HRM_ERR_INVALID_TENSOR,
            HRM_ERR_BLOB_ALIGNMENT,
            HRM_ERR_ARENA_TOO_SMALL,
            HRM_ERR_ARENA_ALIGNMENT,
            HRM_ERR_INPUT_LENGTH,
            HRM_ERR_INVALID_TOKEN,
            HRM_ERR_INVALID_PUZZLE_ID,
            HRM_ERR_NOT_RESET,
            HRM_ERR_OUTPUT_LENGTH,
            HRM_ERR_INVALID_NOISE,
            HRM_ERR_PUZZLE_CHARACTER,
            HRM_ERR_PUZZLE_LENGTH,
            HRM_ERR_PUZZLE_CONFLICT,
            HRM_ERR_NOT_SUDOKU,
        ];
        let message = |code| {
            // SAFETY: hrm_strerror returns a static NUL-terminated string.
            unsafe { core::ffi::CStr::from_ptr(hrm_strerror(code)) }.to_bytes()
        };
        let unknown = message(1);
        for (i, &a) in codes.iter().enumerate() {
            assert_ne!(message(a), unknown, "code {a}");
            for &b in codes.iter().skip(i + 1) {
                assert_ne!(a, b);
                assert_ne!(message(a), message(b), "codes {a} and {b}");
            }
        }
    }
}
