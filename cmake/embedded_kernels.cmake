# clnorm_embedded_kernels(ROOT VAR): the build rule that embeds ROOT/kernels/*.cl and *.clh into
# a generated C file (cmake/embed_kernels.cmake writes it, with no external tool), and sets VAR
# to that file. The main build and the fuzzer's own (tests/fuzz/) both use it.
function(clnorm_embedded_kernels root var)
  file(GLOB sources CONFIGURE_DEPENDS ${root}/kernels/*.cl ${root}/kernels/*.clh)
  list(SORT sources)
  set(embedded ${PROJECT_BINARY_DIR}/generated/kernels_embedded.c)
  string(REPLACE ";" "|" list "${sources}")
  add_custom_command(
    OUTPUT ${embedded}
    COMMAND ${CMAKE_COMMAND} -DOUTPUT=${embedded} "-DSOURCES=${list}" -P
            ${root}/cmake/embed_kernels.cmake
    DEPENDS ${sources} ${root}/cmake/embed_kernels.cmake
    COMMENT "Embedding OpenCL kernels"
    VERBATIM)
  set(${var} ${embedded} PARENT_SCOPE)
endfunction()
