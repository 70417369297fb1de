-- The summaries of one team nearest to a query vector, by exact cosine distance.
-- Only one model's rows: vectors of different models (or sizes) live in different spaces.
-- FINAL so a document delivered twice counts once; LIMIT 1 BY document_id so a trace summarized in
-- several batch runs (renderings) appears once, at its closest rendering.
SELECT
    document_id,
    document_type,
    rendering,
    timestamp,
    content,
    cosineDistance(embedding, {query_vector:Array(Float64)}) AS distance
FROM document_embeddings FINAL
WHERE team_id = {team_id:Int64}
  AND product = {product:String}
  AND model_name = {model_name:String}
  AND startsWith(document_type, {document_type_prefix:String})
  AND ({document_type:String} = '' OR document_type = {document_type:String})
  AND timestamp >= {since:DateTime64(3, 'UTC')}
ORDER BY distance ASC, document_id ASC
LIMIT 1 BY document_id
LIMIT {limit:UInt32}
