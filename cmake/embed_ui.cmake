# cmake/embed_ui.cmake — turns ui/ into a C source: the ui_assets[] table
# agent/api_ui.h declares (path, Content-Type, ETag, bytes) and ui_csp, the
# Content-Security-Policy the page is served with.
# Run at build time: cmake -DUI_DIR=<ui/> -DOUT=<file.c> -P embed_ui.cmake
#
# One request for the whole UI: index.html is served with its stylesheet
# and its JavaScript modules inlined, so a cold browser renders the first
# page after one round trip for the page and one for the API, instead of
# waiting for nine files (docs/UI.md, "First render"). In ui/index.html:
#   <link rel="stylesheet" href="X.css">          -> <style>X.css</style>
#   <script type="module" src="js/app.js"></script> -> <script>(() => {
#     'use strict'; the entry and every module it imports, dependencies
#     first, each in its own function scope; "import { a, b } from './m.js';"
#     becomes "const { a, b } = <m's exports>;" and "export function f"
#     becomes "function f" plus f in the module's returned exports. })();
#     </script> (a classic script: it runs where it stands, at the end of
#     body, before the first paint, where a module would wait)
#   <script src="js/boot.js"></script>             -> <script>boot.js</script>
#     (a classic script: no import or export)
#   <link rel="modulepreload" href=...>            -> removed
# Anything else a module does with import/export (default, "as", "*",
# dynamic import(), a cycle, an export list) stops the build with a message:
# the modules stay plain ES modules, and ui/index.html still works as it is
# from a static file server. The inlined texts are allowed by their SHA-256
# in ui_csp ('unsafe-inline' is never used).
#
# Files not inlined (none today) are embedded as they are. The ETag is the
# first 16 hex digits of what is served's SHA-256, so it changes exactly
# when that does. The built page is also written beside OUT, as
# ui_index.html, to read.
cmake_policy(SET CMP0057 NEW) # if(IN_LIST)

# Base64 (RFC 4648, padded) of the bytes a string of hex digits spells.
function(hex_to_base64 hex out)
  set(abc "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
  string(LENGTH "${hex}" n)
  set(res "")
  set(i 0)
  while(i LESS n)
    math(EXPR left "${n} - ${i}")
    if(left GREATER 6)
      set(left 6)
    endif()
    string(SUBSTRING "${hex}" ${i} ${left} chunk)
    # pad the group to 3 bytes; the padding's sextets become '='
    if(left EQUAL 2)
      set(chunk "${chunk}0000")
      set(keep 2)
    elseif(left EQUAL 4)
      set(chunk "${chunk}00")
      set(keep 3)
    else()
      set(keep 4)
    endif()
    math(EXPR v "0x${chunk}")
    foreach(k RANGE 0 3)
      if(k LESS keep)
        math(EXPR s "(${v} >> (18 - 6 * ${k})) & 63")
        string(SUBSTRING "${abc}" ${s} 1 ch)
        string(APPEND res "${ch}")
      else()
        string(APPEND res "=")
      endif()
    endforeach()
    math(EXPR i "${i} + 6")
  endwhile()
  set(${out} "${res}" PARENT_SCOPE)
endfunction()

# The CSP source for the inline text in variable `var`: 'sha256-<base64>'.
function(csp_hash var out)
  string(SHA256 hex "${${var}}")
  hex_to_base64("${hex}" b64)
  set(${out} "'sha256-${b64}'" PARENT_SCOPE)
endfunction()

# A module's variable in the bundle: js/api.js -> m_js_api_js.
function(module_var rel out)
  string(MAKE_C_IDENTIFIER "m_${rel}" v)
  set(${out} "${v}" PARENT_SCOPE)
endfunction()

# Appends module `rel` (relative to UI_DIR), after the modules it imports,
# to the global property UI_BUNDLE; UI_INLINED lists the files done.
function(bundle_module rel)
  get_property(done GLOBAL PROPERTY UI_INLINED)
  if(rel IN_LIST done)
    return()
  endif()
  get_property(busy GLOBAL PROPERTY UI_BUSY)
  if(rel IN_LIST busy)
    message(FATAL_ERROR "embed_ui: ${rel} is part of an import cycle")
  endif()
  set_property(GLOBAL APPEND PROPERTY UI_BUSY ${rel})
  get_filename_component(dir ${rel} DIRECTORY)
  if(dir)
    set(dir "${dir}/")
  endif()
  file(READ ${UI_DIR}/${rel} src)
  set(src "\n${src}")
  # imports: "import { a, b } from './x.js';" only, each on one line
  string(REGEX MATCHALL "from '\\./[A-Za-z0-9_-]+\\.js'" deps "${src}")
  foreach(d ${deps})
    string(REGEX REPLACE "^from '\\./(.*)'$" "\\1" dep "${d}")
    bundle_module("${dir}${dep}")
    module_var("${dir}${dep}" var)
    string(REPLACE "." "\\." dep_re "${dep}")
    string(REGEX REPLACE "\nimport (\\{[^}\n]*\\}) from '\\./${dep_re}';" "\nconst \\1 = ${var};" src "${src}")
  endforeach()
  if(src MATCHES "\n[ \t]*import[ \t{*]" OR src MATCHES "import\\(" OR src MATCHES "\nconst \\{[^}\n]* as ")
    message(FATAL_ERROR "embed_ui: ${rel}: an import other than \"import { a, b } from './m.js';\"")
  endif()
  # exports: "export function|async function|class|const|let name"
  string(REGEX MATCHALL "\nexport (async function|function|class|const|let) [A-Za-z0-9_]+" exps "${src}")
  set(names "")
  foreach(e ${exps})
    string(REGEX REPLACE ".* ([A-Za-z0-9_]+)$" "\\1" name "${e}")
    string(APPEND names " ${name},")
  endforeach()
  string(REGEX REPLACE "\nexport (async function|function|class|const|let) " "\n\\1 " src "${src}")
  if(src MATCHES "\n[ \t]*export[ \t{*]")
    message(FATAL_ERROR "embed_ui: ${rel}: an export other than \"export function|class|const|let name\"")
  endif()
  module_var(${rel} var)
  set_property(GLOBAL APPEND_STRING PROPERTY UI_BUNDLE
               "const ${var} = (() => { // ${rel}${src}return {${names} };\n})();\n")
  set_property(GLOBAL APPEND PROPERTY UI_INLINED ${rel})
endfunction()

# ---- index.html with its stylesheet and modules inlined
file(READ ${UI_DIR}/index.html page)
set(csp_style "")
string(REGEX MATCH "<link rel=\"stylesheet\" href=\"([^\"]+)\">" m "${page}")
if(m)
  set(css_rel ${CMAKE_MATCH_1})
  file(READ ${UI_DIR}/${css_rel} css)
  if(css MATCHES "</[sS][tT][yY][lL][eE]")
    message(FATAL_ERROR "embed_ui: ${css_rel} holds </style")
  endif()
  set(text "\n${css}")
  csp_hash(text csp_style)
  string(REPLACE "${m}" "<style>${text}</style>" page "${page}")
  set_property(GLOBAL APPEND PROPERTY UI_INLINED ${css_rel})
endif()
# classic scripts: inlined where they stand, as they are
set(csp_script "")
string(REGEX MATCHALL "<script src=\"[^\"]+\"></script>" classic "${page}")
foreach(tag ${classic})
  string(REGEX REPLACE "^<script src=\"([^\"]+)\"></script>$" "\\1" rel "${tag}")
  file(READ ${UI_DIR}/${rel} js)
  if(js MATCHES "</[sS][cC][rR][iI][pP][tT]" OR js MATCHES "<!--")
    message(FATAL_ERROR "embed_ui: ${rel} holds </script or <!--, which cannot be inlined")
  endif()
  if(js MATCHES "(^|\n)[ \t]*(import|export)[ \t{*]")
    message(FATAL_ERROR "embed_ui: ${rel} is a classic script: no import or export")
  endif()
  set(text "\n${js}")
  csp_hash(text h)
  string(APPEND csp_script " ${h}")
  string(REPLACE "${tag}" "<script>${text}</script>" page "${page}")
  set_property(GLOBAL APPEND PROPERTY UI_INLINED ${rel})
endforeach()
string(REGEX MATCH "<script type=\"module\" src=\"([^\"]+)\"></script>" m "${page}")
if(m)
  set(entry ${CMAKE_MATCH_1})
  set_property(GLOBAL PROPERTY UI_BUNDLE "")
  bundle_module(${entry})
  get_property(js GLOBAL PROPERTY UI_BUNDLE)
  if(js MATCHES "</[sS][cC][rR][iI][pP][tT]" OR js MATCHES "<!--")
    message(FATAL_ERROR "embed_ui: a module holds </script or <!--, which cannot be inlined")
  endif()
  # a classic script, strict and in a function scope as a module is, but
  # run as soon as the parser reaches it (a module waits for the end of
  # parsing, and Chromium paints the empty shell first): put it last in body
  set(text "\n(() => {\n'use strict';\n${js}})();\n")
  csp_hash(text h)
  string(APPEND csp_script " ${h}")
  string(REPLACE "${m}" "<script>${text}</script>" page "${page}")
endif()
string(REGEX REPLACE "<link rel=\"modulepreload\" href=\"[^\"]+\">\n" "" page "${page}")
if(page MATCHES "<script [^>]*src=" OR page MATCHES "rel=\"(stylesheet|modulepreload)\"")
  message(FATAL_ERROR "embed_ui: index.html still loads a file the build does not inline")
endif()
get_filename_component(outdir ${OUT} DIRECTORY)
set(built ${outdir}/ui_index.html)
set(old "")
if(EXISTS ${built})
  file(READ ${built} old)
endif()
if(NOT old STREQUAL page)
  file(WRITE ${built} "${page}")
endif()

if(NOT csp_script)
  set(csp_script " 'none'")
endif()
if(NOT csp_style)
  set(csp_style "'none'")
endif()
set(csp "default-src 'none'; script-src${csp_script}; style-src ${csp_style}; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")

# ---- the table
file(GLOB_RECURSE files RELATIVE ${UI_DIR} ${UI_DIR}/*)
list(SORT files)
get_property(inlined GLOBAL PROPERTY UI_INLINED)
set(body "/* generated by cmake/embed_ui.cmake from ui/: do not edit */\n")
string(APPEND body "#include \"agent/api_ui.h\"\n\n")
string(APPEND body "const char ui_csp[] = \"${csp}\";\n\n")
set(table "")
set(n 0)
foreach(rel ${files})
  if(rel IN_LIST inlined)
    continue() # served inside index.html
  endif()
  set(src ${UI_DIR}/${rel})
  if(rel STREQUAL "index.html")
    set(src ${built})
  endif()
  get_filename_component(ext ${rel} LAST_EXT)
  if(ext STREQUAL ".html")
    set(type "text/html; charset=utf-8")
  elseif(ext STREQUAL ".js")
    set(type "text/javascript; charset=utf-8")
  elseif(ext STREQUAL ".css")
    set(type "text/css; charset=utf-8")
  elseif(ext STREQUAL ".svg")
    set(type "image/svg+xml")
  elseif(ext STREQUAL ".png")
    set(type "image/png")
  elseif(ext STREQUAL ".json")
    set(type "application/json")
  elseif(ext STREQUAL ".txt" OR ext STREQUAL ".md")
    set(type "text/plain; charset=utf-8")
  else()
    continue() # editor leftovers and the like are not served
  endif()
  file(READ ${src} hex HEX)
  file(SHA256 ${src} sum)
  string(SUBSTRING ${sum} 0 16 etag)
  string(LENGTH "${hex}" hexlen)
  math(EXPR len "${hexlen} / 2")
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
  string(REGEX REPLACE "((0x..,){16})" "\\1\n" bytes "${bytes}")
  string(APPEND body "static const unsigned char f${n}[] = {\n${bytes}0};\n")
  string(APPEND table "\t{\"${rel}\", \"${type}\", \"\\\"${etag}\\\"\", f${n}, ${len}},\n")
  math(EXPR n "${n} + 1")
endforeach()
string(APPEND body "\nconst struct ui_asset ui_assets[] = {\n${table}};\n")
string(APPEND body "const size_t ui_assets_n = ${n};\n")
# write only on change, so an unchanged UI does not relink the binary
if(EXISTS ${OUT})
  file(READ ${OUT} old)
  if(old STREQUAL body)
    return()
  endif()
endif()
file(WRITE ${OUT} "${body}")
