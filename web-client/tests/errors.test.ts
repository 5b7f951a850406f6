import { describe, expect, it } from 'vitest';
import { ApiError, fieldForError, messageForError, messageForField, NETWORK_ERROR, parseErrorBody, parseRetryAfter } from '../src/lib/errors';

const body = (code: string, field: string | null = null, extra: Record<string, unknown> = {}) => ({
  code,
  message: `server says ${code}`,
  request_id: 'req-1',
  field,
  ...extra,
});

describe('fieldForError', () => {
  const controls = ['mrn', 'given_name', 'birth_date', 'email', 'date', 'time'];

  it('maps a field the form has', () => {
    expect(fieldForError('birth_date', controls)).toBe('birth_date');
  });

  it('returns null without a field or for a field the form lacks', () => {
    expect(fieldForError(null, controls)).toBeNull();
    expect(fieldForError(undefined, controls)).toBeNull();
    expect(fieldForError('', controls)).toBeNull();
    expect(fieldForError('password', controls)).toBeNull();
  });

  it('understands JSON pointers and paths', () => {
    expect(fieldForError('/birth_date', controls)).toBe('birth_date');
    expect(fieldForError('body.email', controls)).toBe('email');
    expect(fieldForError('$.mrn', controls)).toBe('mrn');
    expect(fieldForError('patient.given_name', controls)).toBe('given_name');
    expect(fieldForError('given_name[0]', controls)).toBe('given_name');
  });

  it('follows aliases for fields entered under another control', () => {
    expect(fieldForError('start', controls, { start: 'time' })).toBe('time');
    expect(fieldForError('start', controls)).toBeNull();
  });
});

describe('parseErrorBody', () => {
  it('reads the envelope', () => {
    const b = parseErrorBody(422, JSON.stringify(body('validation_failed', 'mrn')));
    expect(b.code).toBe('validation_failed');
    expect(b.field).toBe('mrn');
  });

  it('falls back by status for non-JSON answers', () => {
    expect(parseErrorBody(502, '<html>Bad gateway</html>').code).toBe('internal');
    expect(parseErrorBody(404, '').code).toBe('not_found');
    expect(parseErrorBody(418, 'teapot').code).toBe('http_418');
    expect(parseErrorBody(400, '{"error":"x"}').code).toBe('malformed_json');
  });
});

describe('parseRetryAfter', () => {
  it('reads seconds and dates', () => {
    expect(parseRetryAfter('30')).toBe(30);
    expect(parseRetryAfter(null)).toBeNull();
    expect(parseRetryAfter('soon')).toBeNull();
    const now = Date.parse('2026-11-23T10:00:00Z');
    expect(parseRetryAfter('Mon, 23 Nov 2026 10:01:00 GMT', now)).toBe(60);
  });
});

describe('ApiError and messages', () => {
  it('keeps the field, code and request id', () => {
    const e = new ApiError(422, body('validation_failed', 'email'));
    expect(e.field).toBe('email');
    expect(e.code).toBe('validation_failed');
    expect(e.requestId).toBe('req-1');
    expect(messageForError(e)).toBe('server says validation_failed');
  });

  it('treats an empty field as none', () => {
    expect(new ApiError(422, body('validation_failed', '')).field).toBeNull();
  });

  it('says when to retry after too many attempts', () => {
    expect(messageForError(new ApiError(429, body('too_many_attempts'), 30))).toMatch(/30 seconds/);
    expect(messageForError(new ApiError(429, body('too_many_attempts'), 600))).toMatch(/10 minutes/);
    expect(messageForError(new ApiError(429, body('rate_limited')))).toMatch(/wait/);
  });

  it('explains join link problems for patients', () => {
    const early = new ApiError(403, body('join_link_early', null, { valid_from: '2026-11-23T08:15:00Z' }));
    expect(messageForError(early, { formatInstant: (iso) => `AT ${iso}` })).toBe('This visit link is not open yet. It opens at AT 2026-11-23T08:15:00Z.');
    expect(messageForError(early)).toMatch(/not open yet/);
    expect(messageForError(new ApiError(403, body('join_link_expired')))).toMatch(/expired/);
    expect(messageForError(new ApiError(401, body('invalid_join_link')))).toMatch(/not valid/);
  });

  it('has plain messages for login and network failures', () => {
    expect(messageForError(new ApiError(401, body('invalid_credentials')))).toBe('The email or password is not correct.');
    expect(messageForError(new ApiError(0, { code: NETWORK_ERROR, message: '' }))).toMatch(/cannot be reached/);
    expect(messageForError(new ApiError(500, body('internal')))).toMatch(/req-1/);
    expect(messageForError('weird')).toMatch(/went wrong/);
  });
});

describe('messageForField', () => {
  it('drops a leading field name and capitalises', () => {
    expect(messageForField('password: must be at least 12 characters', 'password')).toBe('Must be at least 12 characters');
    expect(messageForField('patient_id: is not a valid id', 'patient_id')).toBe('Is not a valid id');
    expect(messageForField('birth_date: in the future', 'body.birth_date')).toBe('In the future');
  });

  it('leaves other messages alone', () => {
    expect(messageForField('a patient with this MRN exists', 'mrn')).toBe('A patient with this MRN exists');
    expect(messageForField('Email is taken', null)).toBe('Email is taken');
  });
});
