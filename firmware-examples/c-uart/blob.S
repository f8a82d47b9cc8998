/* The model blob in flash, 64-byte aligned (every tensor starts at a multiple of 64 from the
   blob's start and the runtime reads it in place). HRM_BLOB_FILE is set by the build. */
    .section .rodata.hrm_blob, "a"
    .balign 64
    .global hrm_blob
hrm_blob:
    .incbin HRM_BLOB_FILE
    .global hrm_blob_end
hrm_blob_end:
