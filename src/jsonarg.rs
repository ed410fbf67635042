//! `JsonbArg`: a jsonb function argument read into `serde_json`, like pgrx's `JsonB`, but a
//! document that cannot be read (nested deeper than serde_json's 128 levels) is a clean 22023
//! naming the problem instead of a Rust panic (XX000).

use crate::err::{raise, Code};
use pgrx::callconv::{Arg, ArgAbi};
use pgrx::nullable::Nullable;
use pgrx::pgrx_sql_entity_graph::metadata::{
    ArgumentError, ReturnsError, ReturnsRef, SqlMappingRef, SqlTranslatable, TypeOrigin,
};
use pgrx::{pg_sys, FromDatum};

/// A jsonb argument as a `serde_json::Value` (numbers keep their exact text).
#[derive(Debug, Clone)]
pub struct JsonbArg(pub serde_json::Value);

impl FromDatum for JsonbArg {
    unsafe fn from_polymorphic_datum(
        datum: pg_sys::Datum,
        is_null: bool,
        _: pg_sys::Oid,
    ) -> Option<Self> {
        if is_null {
            return None;
        }
        // SAFETY: a non-null jsonb argument; jsonb_out returns a palloc'd C string.
        let text = unsafe {
            let detoasted = pg_sys::pg_detoast_datum_packed(datum.cast_mut_ptr());
            pgrx::direct_function_call::<&core::ffi::CStr>(
                pg_sys::jsonb_out,
                &[Some(detoasted.into())],
            )
            .map(|c| c.to_string_lossy().into_owned())
            .unwrap_or_default()
        };
        match serde_json::from_str(&text) {
            Ok(v) => Some(JsonbArg(v)),
            Err(e) => raise(
                Code::ERRCODE_INVALID_PARAMETER_VALUE,
                "a jsonb argument could not be read",
                Some(format!("{e}")),
                Some("Documents may be nested at most 128 levels deep here.".into()),
            ),
        }
    }
}

unsafe impl SqlTranslatable for JsonbArg {
    const TYPE_IDENT: &'static str = concat!(module_path!(), "::JsonbArg");
    const TYPE_ORIGIN: TypeOrigin = TypeOrigin::External;
    const ARGUMENT_SQL: Result<SqlMappingRef, ArgumentError> = Ok(SqlMappingRef::literal("jsonb"));
    const RETURN_SQL: Result<ReturnsRef, ReturnsError> =
        Ok(ReturnsRef::One(SqlMappingRef::literal("jsonb")));
}

// SAFETY: unboxes through FromDatum exactly as pgrx does for its own JsonB.
unsafe impl<'fcx> ArgAbi<'fcx> for JsonbArg {
    unsafe fn unbox_arg_unchecked(arg: Arg<'_, 'fcx>) -> Self {
        let index = arg.index();
        // SAFETY: forwarded from the caller's contract.
        unsafe { arg.unbox_arg_using_from_datum() }.unwrap_or_else(|| {
            raise(
                Code::ERRCODE_NULL_VALUE_NOT_ALLOWED,
                format!("argument {} must not be null", index + 1),
                None,
                None,
            )
        })
    }

    unsafe fn unbox_nullable_arg(arg: Arg<'_, 'fcx>) -> Nullable<Self> {
        // SAFETY: forwarded from the caller's contract.
        unsafe { arg.unbox_arg_using_from_datum() }.into()
    }
}
